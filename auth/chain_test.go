package auth_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
)

// fixed is an authenticator that always answers r and counts its calls.
type fixed struct {
	r     auth.Result
	calls int
	seen  []*auth.Request
}

func (f *fixed) Authenticate(_ context.Context, req *auth.Request) auth.Result {
	f.calls++
	cp := *req
	f.seen = append(f.seen, &cp)
	return f.r
}

func alice() *auth.Principal { return auth.NewPrincipal(auth.PrincipalInfo{Username: "alice"}) }

func TestChain(t *testing.T) {
	pass := auth.PassResult(alice())
	fail := auth.FailResult(auth.Banned, errors.New("banned"))
	cont := auth.ContinueResult([]byte("c"), "s")
	down := auth.UnavailableResult(errBackend)
	none := auth.Result{}
	cases := []struct {
		name     string
		results  []auth.Result
		req      auth.Request
		outcome  auth.Outcome
		code     auth.ReasonCode
		errIs    error
		deciding int // index of the authenticator that decided, -1 none
		calls    []int
	}{
		{"not_relevant_moves_on", []auth.Result{none, none, pass}, auth.Request{}, auth.Pass, 0, nil, 2, []int{1, 1, 1}},
		{"first_pass_decides", []auth.Result{pass, fail}, auth.Request{}, auth.Pass, 0, nil, 0, []int{1, 0}},
		{"first_fail_decides", []auth.Result{none, fail, pass}, auth.Request{}, auth.Fail, auth.Banned, nil, 1, []int{1, 1, 0}},
		{"continue_decides", []auth.Result{cont, pass}, auth.Request{AuthMethod: "M"}, auth.Continue, 0, nil, 0, []int{1, 0}},
		{"unavailable_moves_on_at_connect", []auth.Result{down, pass}, auth.Request{}, auth.Pass, 0, nil, 1, []int{1, 1}},
		{"unavailable_then_fail", []auth.Result{down, fail}, auth.Request{}, auth.Fail, auth.Banned, nil, 1, []int{1, 1}},
		{"only_unavailable", []auth.Result{down, none}, auth.Request{}, auth.Unavailable, 0, auth.ErrUnavailable, -1, []int{1, 1}},
		{"nothing_relevant_method_named_0x8C", []auth.Result{none, none}, auth.Request{AuthMethod: "X"}, auth.Fail, auth.BadAuthenticationMethod, auth.ErrBadMethod, -1, []int{1, 1}},
		{"nothing_relevant_username_0x86", []auth.Result{none}, auth.Request{HasUsername: true}, auth.Fail, auth.BadUserNameOrPassword, auth.ErrNoRelevant, -1, []int{1}},
		{"nothing_relevant_password_0x86", []auth.Result{none}, auth.Request{HasPassword: true}, auth.Fail, auth.BadUserNameOrPassword, auth.ErrNoRelevant, -1, []int{1}},
		{"nothing_relevant_0x87", []auth.Result{none}, auth.Request{}, auth.Fail, auth.NotAuthorized, auth.ErrNoRelevant, -1, []int{1}},
		{"empty_chain_0x87", nil, auth.Request{}, auth.Fail, auth.NotAuthorized, auth.ErrNoRelevant, -1, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c auth.Chain
			var fs []*fixed
			for _, r := range tc.results {
				f := &fixed{r: r}
				fs = append(fs, f)
				c = append(c, f)
			}
			req := tc.req
			r := c.Authenticate(context.Background(), &req)
			require.Equal(t, tc.outcome, r.Outcome)
			if tc.outcome == auth.Fail {
				require.Equal(t, tc.code, r.Code)
			}
			if tc.errIs != nil {
				require.ErrorIs(t, r.Err, tc.errIs)
			}
			for i, f := range fs {
				require.Equal(t, tc.calls[i], f.calls, "calls of authenticator %d", i)
			}
		})
	}
}

func TestChainSkipsNil(t *testing.T) {
	r := auth.Chain{nil, &fixed{r: auth.PassResult(alice())}}.Authenticate(context.Background(), &auth.Request{})
	require.Equal(t, auth.Pass, r.Outcome)
}

// A multi-step exchange stays with the authenticator that began it, even
// when an earlier one would now find the packet relevant.
func TestChainExchangeSticks(t *testing.T) {
	first := &fixed{} // NotRelevant at CONNECT...
	second := &fixed{r: auth.ContinueResult([]byte("c1"), "inner-1")}
	c := auth.Chain{first, second}
	req := &auth.Request{AuthMethod: "M"}
	r := c.Authenticate(context.Background(), req)
	require.Equal(t, auth.Continue, r.Outcome)

	first.r = auth.PassResult(alice()) // ...but it would pass the next packet.
	second.r = auth.PassResult(alice())
	held := r.State
	next := &auth.Request{AuthMethod: "M", Step: 1, State: held}
	r = c.Authenticate(context.Background(), next)
	require.Equal(t, auth.Pass, r.Outcome)
	require.Equal(t, 1, first.calls, "the first authenticator is not asked mid-exchange")
	require.Equal(t, 2, second.calls)
	require.Equal(t, "inner-1", second.seen[1].State, "the inner state is handed back")
	require.Equal(t, held, next.State, "the request's state is restored after the call")

	// Re-authentication goes to the authenticator that passed.
	first.r = auth.FailResult(auth.NotAuthorized, nil)
	second.r = auth.UnavailableResult(errBackend)
	re := c.Authenticate(context.Background(), &auth.Request{AuthMethod: "M", Reauth: true, State: r.State})
	require.Equal(t, auth.Unavailable, re.Outcome, "Unavailable does not move on at re-authentication")
	require.Equal(t, 1, first.calls)
}

func TestChainLostState(t *testing.T) {
	r := auth.Chain{&fixed{r: auth.PassResult(alice())}}.Authenticate(context.Background(), &auth.Request{Step: 2, State: "foreign"})
	require.Equal(t, auth.Fail, r.Outcome)
	require.Equal(t, auth.NotAuthorized, r.Code)
}

// Re-authentication with no recorded position walks the chain, and
// Unavailable stops it.
func TestChainReauthWithoutState(t *testing.T) {
	down := &fixed{r: auth.UnavailableResult(errBackend)}
	pass := &fixed{r: auth.PassResult(alice())}
	r := auth.Chain{&fixed{}, down, pass}.Authenticate(context.Background(), &auth.Request{Reauth: true})
	require.Equal(t, auth.Unavailable, r.Outcome)
	require.Zero(t, pass.calls)
}

// A chain nests in a chain; the inner position survives the round trip.
func TestChainNested(t *testing.T) {
	inner := &fixed{r: auth.ContinueResult(nil, "deep")}
	c := auth.Chain{&fixed{}, auth.Chain{&fixed{}, inner}}
	r := c.Authenticate(context.Background(), &auth.Request{AuthMethod: "M"})
	require.Equal(t, auth.Continue, r.Outcome)
	inner.r = auth.PassResult(alice())
	r = c.Authenticate(context.Background(), &auth.Request{AuthMethod: "M", Step: 1, State: r.State})
	require.Equal(t, auth.Pass, r.Outcome)
	require.Equal(t, "deep", inner.seen[1].State)
}

// A NotRelevant from the authenticator that holds the exchange fails.
func TestChainResumeNotRelevant(t *testing.T) {
	a := &fixed{r: auth.ContinueResult(nil, nil)}
	c := auth.Chain{a}
	r := c.Authenticate(context.Background(), &auth.Request{AuthMethod: "M"})
	a.r = auth.Result{}
	r = c.Authenticate(context.Background(), &auth.Request{AuthMethod: "M", Step: 1, State: r.State})
	require.Equal(t, auth.Fail, r.Outcome)
	require.ErrorIs(t, r.Err, auth.ErrNoRelevant)
}
