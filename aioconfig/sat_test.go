package aioconfig_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/satauth/sattest"
)

func satDoc(settings string) string {
	return v1 + "kind: BrokerAuthentication\nmetadata: {name: a}\nspec: {authenticationMethods: [{method: ServiceAccountToken, serviceAccountTokenSettings: {audiences: [aio-mq]" + settings + "}}]}"
}

// TestSATLoad: cacheTTL, attributeTTL and watch load; watch is on unless
// it says false.
func TestSATLoad(t *testing.T) {
	for _, tc := range []struct {
		name, settings string
		cacheTTL, attr string
		following      bool
	}{
		{"defaults", "", "", "", true},
		{"all", ", cacheTTL: 2m, attributeTTL: 30s, watch: false", "2m", "30s", false},
		{"watch_true", ", watch: true", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := aioconfig.Parse([]byte(satDoc(tc.settings)), "test.yaml", "")
			require.NoError(t, err)
			s := c.Authentications[0].Methods[0].SAT
			require.Equal(t, tc.cacheTTL, s.CacheTTL)
			require.Equal(t, tc.attr, s.AttributeTTL)
			require.Equal(t, tc.following, s.Following())
		})
	}
}

// TestSATLoadErrors: a wrong value or field of the new SAT settings is
// refused with its document, field, value and the fix.
func TestSATLoadErrors(t *testing.T) {
	const at = "spec.authenticationMethods[0].serviceAccountTokenSettings."
	for _, tc := range []struct {
		name, settings string
		is             error
		want           []string
	}{
		{"cache_ttl_word", ", cacheTTL: soon", aioconfig.ErrInvalidValue,
			[]string{`BrokerAuthentication "a"`, at + `cacheTTL "soon"`, "a positive duration such as 5m"}},
		{"cache_ttl_negative", ", cacheTTL: -1m", aioconfig.ErrInvalidValue, []string{at + `cacheTTL "-1m"`}},
		{"cache_ttl_zero", ", cacheTTL: 0s", aioconfig.ErrInvalidValue, []string{at + `cacheTTL "0s"`, "omit it for 5m"}},
		{"attribute_ttl", ", attributeTTL: 1 minute", aioconfig.ErrInvalidValue,
			[]string{at + `attributeTTL "1 minute"`, "such as 1m"}},
		{"mode", ", mode: TokenReview", aioconfig.ErrInvalidValue, []string{at + `mode "TokenReview"`, "want tokenReview or local"}},
		{"watch_not_bool", ", watch: sometimes", aioconfig.ErrSyntax, []string{"serviceAccountTokenSettings"}},
		{"cache_ttl_case", ", cacheTtl: 1m", aioconfig.ErrUnknownField, []string{at + "cacheTtl", "case-sensitive: cacheTTL"}},
		{"watch_near_miss", ", watches: false", aioconfig.ErrUnknownField, []string{at + "watches", "watch"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := aioconfig.Parse([]byte(satDoc(tc.settings)), "test.yaml", "")
			require.Error(t, err)
			require.ErrorIs(t, err, tc.is)
			require.ErrorContains(t, err, "test.yaml: document 1")
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

// satPort is a plain port whose one method is ServiceAccountToken against
// a sattest API server: %[1]s its URL, %[2]s its CA file, %[3]s the
// broker's token file, %[4]s more settings.
const satPort = v1 + `kind: BrokerListener
metadata: {name: pods}
spec:
  ports:
    - {port: 1883, authenticationRef: sat}
---
` + v1 + `kind: BrokerAuthentication
metadata: {name: sat}
spec:
  authenticationMethods:
    - method: ServiceAccountToken
      serviceAccountTokenSettings:
        audiences: [aio-mq]
        apiServer: %[1]s
        caFile: %[2]s
        tokenFile: %[3]s
%[4]s`

func satBroker(t *testing.T, srv *sattest.Server, more string) (*aioconfig.Broker, *auth.Manager) {
	t.Helper()
	return build(t, t.TempDir(), fmt.Sprintf(satPort, srv.URL(), srv.CAFile(), srv.TokenFile(), more))
}

// TestSATPortWatch: the Broker's watches include the SAT follower, so the
// Manager built from AuthConfig disconnects a client whose service
// account is deleted (0x87); watch: false leaves it out; Describe says
// which.
func TestSATPortWatch(t *testing.T) {
	for _, tc := range []struct {
		name, more string
		watch      bool
		desc       string
	}{
		{"watch_on", "        cacheTTL: 2m\n        attributeTTL: 30s\n", true,
			"1. ServiceAccountToken audiences [aio-mq], tokenReview, cacheTTL 2m, attributeTTL 30s, watch on"},
		{"watch_off", "        watch: false\n", false,
			"1. ServiceAccountToken audiences [aio-mq], tokenReview, cacheTTL 5m, attributeTTL 1m, watch off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := sattest.NewServer(t, sattest.Options{})
			srv.AddServiceAccount("ns1", "dev", nil)
			b, m := satBroker(t, srv, tc.more)
			var names []string
			for _, w := range b.Watches() {
				names = append(names, w.Name)
			}
			out := describe(t, b)
			require.Contains(t, out, tc.desc)
			const watchName = "kubernetes serviceaccounts and pods of serviceAccountToken (BrokerAuthentication sat method 1)"
			if !tc.watch {
				require.NotContains(t, names, watchName)
				require.NotContains(t, out, "watched: kubernetes")
			} else {
				require.Contains(t, names, watchName)
				require.Contains(t, out, "watched: "+watchName)
			}

			tok := srv.Token("ns1", "dev", sattest.TokenOptions{Audiences: []string{"aio-mq"}, Lifetime: time.Hour})
			_, conn, r := connect(t, m, &auth.Request{Listener: b.Ports[0].Name, ClientID: "dev", AuthMethod: satauth.Method, AuthData: []byte(tok)})
			require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
			if tc.watch {
				require.Eventually(t, func() bool { return srv.Calls(sattest.Watch) >= 2 }, 5*time.Second, 10*time.Millisecond)
			}
			srv.DeleteServiceAccount("ns1", "dev")
			if !tc.watch {
				time.Sleep(500 * time.Millisecond)
				_, closed := conn.Final()
				require.False(t, closed, "without the watch a live session is not followed")
				require.Zero(t, srv.Calls(sattest.Watch))
				return
			}
			require.Eventually(t, func() bool { _, closed := conn.Final(); return closed }, 5*time.Second, 10*time.Millisecond)
			final, _ := conn.Final()
			require.Equal(t, auth.DISCONNECT, final.Type)
			require.Equal(t, auth.NotAuthorized, final.Code)
		})
	}
}

// TestSATReadyChecks: CheckReady runs satauth's start-up check and says
// what the broker's identity lacks; the method's ReadyCheck reports it to
// a probe, and asks again only after a while.
func TestSATReadyChecks(t *testing.T) {
	ctx := context.Background()
	srv := sattest.NewServer(t, sattest.Options{})
	srv.Forbid(sattest.ServiceAccountGet, true)
	b, _ := satBroker(t, srv, "")
	checks := b.ReadyChecks()
	require.Len(t, checks, 1)
	require.Equal(t, "serviceAccountToken (BrokerAuthentication sat method 1)", checks[0].Name)

	err := b.CheckReady(ctx)
	require.ErrorIs(t, err, satauth.ErrNotReady)
	require.ErrorContains(t, err, "serviceAccountToken (BrokerAuthentication sat method 1)")
	require.ErrorContains(t, err, `may not get serviceaccounts, list serviceaccounts, watch serviceaccounts; `+
		`add to a ClusterRole bound to it: {apiGroups: [""], resources: ["serviceaccounts"], verbs: ["get", "list", "watch"]}`)
	require.ErrorIs(t, checks[0].Check(ctx), satauth.ErrNotReady)

	srv.Forbid(sattest.ServiceAccountGet, false)
	reviews := srv.Calls(sattest.AccessReview)
	require.ErrorIs(t, checks[0].Check(ctx), satauth.ErrNotReady, "the probe does not ask the API at its own pace")
	require.Equal(t, reviews, srv.Calls(sattest.AccessReview))
	require.NoError(t, b.CheckReady(ctx))
	require.NoError(t, checks[0].Check(ctx))
}

// TestSATReadyFirstProbe: a probe before the start-up check runs it.
func TestSATReadyFirstProbe(t *testing.T) {
	srv := sattest.NewServer(t, sattest.Options{})
	b, _ := satBroker(t, srv, "")
	require.NoError(t, b.ReadyChecks()[0].Check(context.Background()))
	require.NotZero(t, srv.Calls(sattest.AccessReview))
}
