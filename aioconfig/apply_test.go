package aioconfig_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
)

// applyDoc loads doc (the twoPorts fixture's files beside it) and applies
// it to the fixture's Broker.
func (f *fixture) apply(t *testing.T, doc string) (aioconfig.Changes, error) {
	t.Helper()
	path := filepath.Join(f.dir, "next.yaml")
	require.NoError(t, os.WriteFile(path, []byte(doc), 0o600))
	c, err := aioconfig.Load(path)
	require.NoError(t, err)
	return f.broker.Apply(context.Background(), c)
}

// recheck runs the configuration watch's rule over every live session,
// as the Manager does after Apply, and waits for it.
func (f *fixture) recheck(t *testing.T) auth.RecheckReport {
	t.Helper()
	for _, w := range f.broker.Watches() {
		if w.Name == aioconfig.ConfigurationWatch {
			return f.m.Recheck(context.Background(), w.Check)
		}
	}
	t.Fatal("no configuration watch")
	return auth.RecheckReport{}
}

func disconnectedWith(t *testing.T, c *authtest.Conn, code auth.ReasonCode) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("not disconnected (want 0x%02X)", byte(code))
	}
	final, _ := c.Final()
	require.Equal(t, auth.DISCONNECT, final.Type)
	require.Equal(t, code, final.Code)
}

// TestApply: every change of ports and authentication methods applies to
// a running Broker, and the live sessions follow the rule of Apply: a
// change that does not touch a session's port, method or policy leaves
// it alone; a removed method disconnects the sessions it authenticated
// (0x87 for X.509, whose clients name no method; 0x8C for the others); a
// removed port disconnects its sessions (0x8B); an invalid configuration
// changes nothing.
func TestApply(t *testing.T) {
	f := newFixture(t)
	doc := fmt.Sprintf(twoPorts, f.public, f.local)
	pub, loc := f.broker.Ports[0], f.broker.Ports[1]
	_, thermostat, r := f.tlsConnect(t, pub, pub.Name, f.pki.Thermostat)
	require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
	_, sample, r := f.scramConnect(t, loc.Name, "sample", "pw")
	require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
	stays := func(c *authtest.Conn, why string) {
		t.Helper()
		_, closed := c.Final()
		require.False(t, closed, why)
	}

	t.Run("port_added_unrelated_sessions_stay", func(t *testing.T) {
		third := `---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: {name: third}
spec: {ports: [{port: 18999, address: 127.0.0.1, authenticationRef: scram-auth}]}
`
		ch, err := f.apply(t, doc+third)
		require.NoError(t, err)
		require.Equal(t, []string{"third:18999"}, ch.Added)
		require.Empty(t, ch.Authentications, "unchanged BrokerAuthentications keep their sources")
		require.Empty(t, ch.RestartRequired)
		require.NotNil(t, f.broker.Port("third:18999"))
		require.Same(t, pub.TLS, f.broker.Port(pub.Name).TLS, "the same TLS configuration: its session tickets stay valid")
		require.Len(t, f.broker.CurrentPorts(), 3)
		rep := f.recheck(t)
		require.Equal(t, 2, rep.Checked)
		require.Zero(t, rep.Disconnected)
		stays(thermostat, "the X.509 session is not touched")
		stays(sample, "the SCRAM session is not touched")
		r := f.broker.Authenticate(context.Background(), &auth.Request{Listener: "third:18999", ClientID: "x", AuthMethod: "SCRAM-SHA-256", AuthData: []byte("n,,n=sample,r=abc")})
		require.Equal(t, auth.Continue, r.Outcome, "the new port's chain answers: %v", r.Err)
	})

	t.Run("invalid_keeps_the_last_good_configuration", func(t *testing.T) {
		_, err := f.apply(t, strings.Replace(doc, "authenticationRef: scram-auth", "authenticationRef: nobody", 1))
		require.ErrorIs(t, err, aioconfig.ErrNotFound)
		require.Len(t, f.broker.CurrentPorts(), 3)
	})

	t.Run("method_removed_disconnects_its_sessions", func(t *testing.T) {
		// x509-auth now offers SCRAM only: the X.509 session's method is
		// gone; the SCRAM session of the other port stays.
		next := strings.Replace(doc, `    - method: x509Credentials
      x509Credentials:
        trustedClientCaCert: fabrikam-ca
        authorizationAttributes:
          thermostat: {subject: "CN = thermostat", attributes: {group: thermostat_group}}`, `    - method: SCRAM
      scramSettings: {usersFile: scram-users}`, 1)
		ch, err := f.apply(t, next)
		require.NoError(t, err)
		require.Equal(t, []string{"x509-auth"}, ch.Authentications)
		require.Equal(t, []string{"third:18999"}, ch.Removed)
		require.Contains(t, ch.Changed, pub.Name)
		// The Manager's configuration watch runs on its own.
		disconnectedWith(t, thermostat, auth.NotAuthorized)
		stays(sample, "the SCRAM session is not touched")
		require.Nil(t, f.broker.Port(pub.Name).TLS.VerifyConnection, "no client certificate verification any more")
	})

	t.Run("port_removed_disconnects_0x8B", func(t *testing.T) {
		i := strings.Index(doc, "---\napiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: BrokerListener\nmetadata: {name: local}")
		j := strings.Index(doc, "---\napiVersion: mqttbroker.iotoperations.azure.com/v1beta1")
		ch, err := f.apply(t, doc[:i]+doc[j:])
		require.NoError(t, err)
		require.Equal(t, []string{loc.Name}, ch.Removed)
		disconnectedWith(t, sample, auth.ServerShuttingDown)
		require.Nil(t, f.broker.Port(loc.Name))
	})
}

// TestApplyRecheckMethodCodes: a session whose SCRAM method is removed
// gets DISCONNECT 0x8C (Bad authentication method); the JWT method that
// replaces it is known to the brute-force defence.
func TestApplyRecheckMethodCodes(t *testing.T) {
	f := newFixture(t)
	doc := fmt.Sprintf(twoPorts, f.public, f.local)
	loc := f.broker.Ports[1]
	_, sample, r := f.scramConnect(t, loc.Name, "sample", "pw")
	require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
	next := strings.Replace(doc, `    - method: SCRAM
      scramSettings: {usersFile: scram-users}`, `    - method: JWT
      jwtSettings: {issuer: 'https://issuer.invalid/', audiences: [mqtt]}`, 1)
	require.NotContains(t, describe(t, f.broker), `methods ["JWT"]`)
	_, err := f.apply(t, next)
	require.NoError(t, err)
	disconnectedWith(t, sample, auth.BadAuthenticationMethod)
	require.Contains(t, describe(t, f.broker), `the user name of methods ["JWT"] is not counted`,
		"the brute-force defence follows the methods added")
}

// TestApplyRecheckNewSource: a session whose method stays but whose
// BrokerAuthentication now reads another source is re-checked against it:
// a SCRAM users Secret without the session's user disconnects it (0x87);
// the X.509 session of the other port stays.
func TestApplyRecheckNewSource(t *testing.T) {
	f := newFixture(t)
	writeTree(t, f.dir, map[string][]byte{"mounts/secrets/other-users/users.json": []byte(`{"users": []}`)})
	doc := fmt.Sprintf(twoPorts, f.public, f.local)
	pub, loc := f.broker.Ports[0], f.broker.Ports[1]
	_, thermostat, r := f.tlsConnect(t, pub, pub.Name, f.pki.Thermostat)
	require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
	_, sample, r := f.scramConnect(t, loc.Name, "sample", "pw")
	require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
	ch, err := f.apply(t, strings.Replace(doc, "usersFile: scram-users", "usersFile: other-users", 1))
	require.NoError(t, err)
	require.Equal(t, []string{"scram-auth"}, ch.Authentications)
	disconnectedWith(t, sample, auth.NotAuthorized)
	rep := f.recheck(t)
	require.Equal(t, 1, rep.Checked, "the X.509 session only")
	require.Zero(t, rep.Disconnected)
	_, closed := thermostat.Final()
	require.False(t, closed)
}
