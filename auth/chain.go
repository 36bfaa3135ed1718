package auth

import (
	"context"
	"errors"
	"fmt"
)

// Chain is an [Authenticator] that tries an ordered list of authenticators
// with relevance-then-validity semantics, as production IoT brokers do:
//
//   - NotRelevant moves on to the next authenticator.
//   - At CONNECT, Unavailable moves on too: a backend that cannot be reached
//     lets the next method try.
//   - The first Pass, Fail or Continue decides.
//   - A multi-step exchange stays with the authenticator that began it, and
//     re-authentication goes to the authenticator that authenticated the
//     connection: the Chain keeps its position in Result.State.
//   - When nothing is relevant the Chain fails with 0x8C (Bad authentication
//     method) if the client named an Authentication Method, 0x86 (Bad User
//     Name or Password) if it sent a user name or password, and 0x87 (Not
//     authorized) otherwise. When nothing is relevant but an authenticator
//     was Unavailable, the Chain is Unavailable, which a Session answers
//     with CONNACK 0x88 (Server unavailable): the client may retry.
//
// Nil entries are skipped. A Chain is itself an Authenticator, so chains
// nest.
type Chain []Authenticator

// chainState remembers which authenticator of a Chain holds an exchange.
type chainState struct {
	index int
	inner any
}

// routes holds preallocated states for the common case of no inner state,
// so that a Pass needs no allocation to remember its authenticator.
var routes = func() (r [16]chainState) {
	for i := range r {
		r[i].index = i
	}
	return r
}()

func route(index int, inner any) *chainState {
	if inner == nil && index < len(routes) {
		return &routes[index]
	}
	return &chainState{index: index, inner: inner}
}

// Authenticate runs the chain over req.
func (c Chain) Authenticate(ctx context.Context, req *Request) Result {
	if req.Step > 0 || req.Reauth {
		if st, ok := req.State.(*chainState); ok && st.index < len(c) && c[st.index] != nil {
			return c.resume(ctx, req, st)
		}
		if req.Step > 0 {
			return FailResult(NotAuthorized, errors.New("auth: chain: exchange state lost"))
		}
	}
	var unavailable []error
	for i, a := range c {
		if a == nil {
			continue
		}
		r := a.Authenticate(ctx, req)
		switch r.Outcome {
		case NotRelevant:
			continue
		case Unavailable:
			if req.Reauth {
				return r
			}
			unavailable = append(unavailable, r.Err)
			continue
		}
		r.State = route(i, r.State)
		return r
	}
	if unavailable != nil {
		return UnavailableResult(fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(unavailable...)))
	}
	return noRelevant(req)
}

// resume hands a continuation or a re-authentication to the authenticator
// that holds it. req.State is swapped for the inner state for the call and
// restored afterwards, so that no copy of the Request is made.
func (c Chain) resume(ctx context.Context, req *Request, st *chainState) Result {
	req.State = st.inner
	r := c[st.index].Authenticate(ctx, req)
	req.State = st
	if r.Outcome == NotRelevant {
		return FailResult(NotAuthorized, fmt.Errorf("%w: the method that began the exchange no longer accepts it", ErrNoRelevant))
	}
	r.State = route(st.index, r.State)
	return r
}

// noRelevant is the Result when no authenticator found req relevant.
func noRelevant(req *Request) Result {
	switch {
	case req.AuthMethod != "":
		return FailResult(BadAuthenticationMethod, fmt.Errorf("%w: %q", ErrBadMethod, req.AuthMethod))
	case req.HasUsername || req.HasPassword:
		return FailResult(BadUserNameOrPassword, ErrNoRelevant)
	default:
		return FailResult(NotAuthorized, ErrNoRelevant)
	}
}
