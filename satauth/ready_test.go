package satauth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/satauth/sattest"
)

// A permission granted at run time (RBAC) is noticed by the background
// check within ReadyRetry, without anyone calling CheckReady or probing,
// and the turn is logged at Info with how long it was not ready. The
// failed retries log nothing. (Before: ready only when a probe came and
// 30 s had passed; nothing said so.)
func TestReadyAfterPermissionGranted(t *testing.T) {
	srv := sattest.NewServer(t, sattest.Options{})
	srv.Forbid(sattest.ServiceAccountGet, true)
	a, logs := newAuth(t, srv, func(c *satauth.Config) { c.ReadyRetry = 20 * time.Millisecond })
	require.ErrorIs(t, a.CheckReady(context.Background()), satauth.ErrNotReady)
	// A few retries fail quietly.
	require.Eventually(t, func() bool { return srv.Calls(sattest.AccessReview) >= 9 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, 1, strings.Count(logs.String(), "level=ERROR"), "only CheckReady's line:\n%s", logs)
	require.ErrorIs(t, a.Ready(), satauth.ErrNotReady)

	srv.Forbid(sattest.ServiceAccountGet, false)
	require.Eventually(t, func() bool { return a.Ready() == nil }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "msg=\"satauth: ready\"") }, time.Second, 5*time.Millisecond)
	require.Contains(t, logs.String(), "not_ready_for=")
	// Ready, the background check has ended: no more reviews.
	n := srv.Calls(sattest.AccessReview)
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, n, srv.Calls(sattest.AccessReview))
}

// With a negative ReadyRetry nothing runs in the background.
func TestReadyRetryOff(t *testing.T) {
	srv := sattest.NewServer(t, sattest.Options{})
	srv.Forbid(sattest.ServiceAccountGet, true)
	a, _ := newAuth(t, srv, func(c *satauth.Config) { c.ReadyRetry = -1 })
	require.Error(t, a.CheckReady(context.Background()))
	n := srv.Calls(sattest.AccessReview)
	srv.Forbid(sattest.ServiceAccountGet, false)
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, n, srv.Calls(sattest.AccessReview))
	require.Error(t, a.Ready())
}
