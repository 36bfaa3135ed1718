package revocation_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/revocation"
	"github.com/mqttauth/mqttauth/revocation/revocationtest"
)

// With the defaults, a client whose OCSP answers carry no nextUpdate is
// disconnected within minutes of its revocation, not within the hour:
// the answer is fetched again 3 min 45 s after its thisUpdate
// (DefaultMaxAge 5 min, refreshed a quarter before). Before, such an
// answer was fresh for an hour and refreshed after 45 minutes.
func TestNoNextUpdateRevokedWithinMinutes(t *testing.T) {
	f := newX509Fixture(t, "ocsp", revocation.Config{})
	f.resp.SetValidity(0) // answers without nextUpdate
	stop := f.checker.RecheckOnRevoke(f.m, f.a.Check, 0)
	defer stop()
	_, conn, res := connect(t, f.m, f.leaf)
	require.Equal(t, auth.Success, res.Packet.Code, "%v", res.Err)

	f.resp.Set(f.leaf.Cert, revocationtest.Revoked)
	f.clock.Add(3*time.Minute + 45*time.Second + revocation.DefaultRefreshInterval)
	f.checker.Refresh(context.Background())
	select {
	case <-conn.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked client was not disconnected within 4 minutes")
	}
	final, _ := conn.Final()
	require.Equal(t, auth.NotAuthorized, final.Code)
	require.LessOrEqual(t, revocation.DefaultMaxAge, 5*time.Minute)
}
