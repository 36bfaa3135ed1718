package mochi_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	mochiauth "github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest/conformance"
)

// needTool returns the path of a command-line tool. Without it the test is
// skipped, except under CI=true, where it fails.
func needTool(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s is not installed (apt-get install -y mosquitto-clients mosquitto)", name)
		}
		tb.Skipf("%s is not installed (apt-get install -y mosquitto-clients): skipping", name)
	}
	return p
}

// userAuthn passes every client with a user name, as the principal of that
// name.
var userAuthn = auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
	if !req.HasUsername {
		return auth.Result{}
	}
	return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: req.Username}))
})

// newsPolicy lets alice read news/# and everyone publish; eve may only
// connect and publish.
const newsPolicy = `{"rules": [
  {"principals": {"usernames": ["alice", "eve", "pub"]}, "brokerResources": [{"method": "Connect"}, {"method": "Publish", "topics": ["#"]}]},
  {"principals": {"usernames": ["alice"]}, "brokerResources": [{"method": "Subscribe", "topics": ["news/#"]}]}
]}`

// startPlain starts mochi without the adapter, allowing everyone: the
// reference for what mochi itself does.
func startPlain(tb testing.TB) string {
	tb.Helper()
	_, addr := startPlainServer(tb)
	return addr
}

// startPlainServer is startPlain, returning the server too.
func startPlainServer(tb testing.TB) (*broker, string) {
	tb.Helper()
	srv := mqtt.New(&mqtt.Options{Logger: quiet, InlineClient: true})
	require.NoError(tb, srv.AddHook(new(mochiauth.AllowHook), nil))
	ln := listeners.NewTCP(listeners.Config{Type: listeners.TypeTCP, ID: "tcp", Address: "127.0.0.1:0"})
	require.NoError(tb, srv.AddListener(ln))
	require.NoError(tb, srv.Serve())
	b := &broker{Server: srv, tb: tb}
	tb.Cleanup(b.Stop)
	return b, ln.Address()
}

func userConnect(id, user string, clean bool, expiry uint32) *paho.Connect {
	return &paho.Connect{ClientID: id, CleanStart: clean, Username: user, UsernameFlag: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
}

func publishExpiring(t *testing.T, c *conformance.Client, topic, payload string, expiry uint32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload),
		Properties: &paho.PublishProperties{MessageExpiry: &expiry}})
	require.NoError(t, err)
	require.Equal(t, byte(0), pr.ReasonCode)
}

// received collects the messages a client gets within d.
func received(c *conformance.Client, d time.Duration) []string {
	var got []string
	deadline := time.After(d)
	for {
		select {
		case m := <-c.Messages:
			got = append(got, m.Topic+" "+string(m.Payload))
		case <-deadline:
			return got
		}
	}
}

// TestOfflineSessionDelivery [MQTT-3.1.2-5]: a client with Clean Start 0
// and a session expiry interval subscribes at QoS 1 and disconnects; the
// QoS 1 messages published meanwhile are delivered when it comes back, except
// one whose message expiry interval passed while it was offline
// [MQTT-3.3.2-5]. Plain mochi does this; through the adapter, mochi's
// delivery check (OnACLCheck for the offline client) used to deny them all.
func TestOfflineSessionDelivery(t *testing.T) {
	for _, name := range []string{"mochi", "adapter"} {
		t.Run("broker="+name, func(t *testing.T) {
			var addr string
			var h *mochi.Hook
			if name == "mochi" {
				addr = startPlain(t)
			} else {
				m := newManager(t, auth.Config{Authenticator: userAuthn, Authorizer: mustPolicy(t, newsPolicy)})
				_, h, addr = startBroker(t, mochi.Config{Manager: m})
			}
			sub, _, err := conformance.Dial(t, addr, userConnect("reader", "alice", true, 60), nil)
			require.NoError(t, err)
			require.Equal(t, byte(1), sub.SubscribeCode(t, "news/#"))
			require.NoError(t, sub.Disconnect(&paho.Disconnect{}))
			<-sub.Done()
			if h != nil {
				require.Eventually(t, func() bool { return h.Offline() == 1 }, 5*time.Second, 10*time.Millisecond)
			}

			pub, _, err := conformance.Dial(t, addr, userConnect("pub", "pub", true, 0), nil)
			require.NoError(t, err)
			publishExpiring(t, pub, "news/short", "gone", 1)
			require.Equal(t, byte(0), pub.PublishQoS1(t, "news/a", "kept"))
			publishExpiring(t, pub, "news/long", "kept", 600)
			// mochi counts expiry in whole seconds and sweeps once a second.
			time.Sleep(3 * time.Second)

			back, ca, err := conformance.Dial(t, addr, userConnect("reader", "alice", false, 60), nil)
			require.NoError(t, err)
			require.True(t, ca.SessionPresent)
			got := received(back, 2*time.Second)
			require.ElementsMatch(t, []string{"news/a kept", "news/long kept"}, got)
			if h != nil {
				require.Zero(t, h.Offline(), "the principal kept for the offline session outlived the resumption")
				require.Equal(t, 2, h.Len())
			}
		})
	}
}

// TestOfflineSessionOtherPrincipal: a session resumed by another principal
// under the same client id keeps only what that principal may have: the
// subscription it may not make is removed and the queued messages it may
// not read are dropped before mochi resends them.
func TestOfflineSessionOtherPrincipal(t *testing.T) {
	m := newManager(t, auth.Config{Authenticator: userAuthn, Authorizer: mustPolicy(t, newsPolicy)})
	b, h, addr := startBroker(t, mochi.Config{Manager: m})
	sub, _, err := conformance.Dial(t, addr, userConnect("dev", "alice", true, 60), nil)
	require.NoError(t, err)
	require.Equal(t, byte(1), sub.SubscribeCode(t, "news/#"))
	require.NoError(t, sub.Disconnect(&paho.Disconnect{}))
	<-sub.Done()
	require.Eventually(t, func() bool { return h.Offline() == 1 }, 5*time.Second, 10*time.Millisecond)

	pub, _, err := conformance.Dial(t, addr, userConnect("pub", "pub", true, 0), nil)
	require.NoError(t, err)
	require.Equal(t, byte(0), pub.PublishQoS1(t, "news/queued", "for alice"))

	eve, ca, err := conformance.Dial(t, addr, userConnect("dev", "eve", false, 60), nil)
	require.NoError(t, err)
	require.True(t, ca.SessionPresent)
	require.Equal(t, byte(0), pub.PublishQoS1(t, "news/live", "for alice"))
	require.Empty(t, received(eve, time.Second), "eve received what only alice may read")
	cl, ok := b.Clients.Get("dev")
	require.True(t, ok)
	require.Empty(t, cl.State.Subscriptions.GetAll(), "alice's subscription survived on eve's session")
	require.Zero(t, h.Offline())
}

// TestOfflineSessionsExpire: the principals kept for offline sessions are
// dropped when mochi expires the sessions, so the hook's memory returns to
// the live count.
func TestOfflineSessionsExpire(t *testing.T) {
	m := newManager(t, auth.Config{Authenticator: userAuthn, Authorizer: mustPolicy(t, newsPolicy)})
	_, h, addr := startBroker(t, mochi.Config{Manager: m})
	live, _, err := conformance.Dial(t, addr, userConnect("live", "alice", true, 0), nil)
	require.NoError(t, err)
	_ = live
	const n = 50
	for i := range n {
		c, _, err := conformance.Dial(t, addr, userConnect("gone-"+strconv.Itoa(i), "alice", true, 1), nil)
		require.NoError(t, err)
		require.Equal(t, byte(1), c.SubscribeCode(t, "news/#"))
		require.NoError(t, c.Disconnect(&paho.Disconnect{}))
		<-c.Done()
	}
	require.Eventually(t, func() bool { return h.Offline() == n }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, n+1, h.Len())
	require.Eventually(t, func() bool { return h.Offline() == 0 && h.Len() == 1 }, 10*time.Second, 50*time.Millisecond,
		"offline %d, held %d: the expired sessions' principals were kept", h.Offline(), h.Len())
	require.Equal(t, 1, m.Len())
}

// TestOfflineSessionMosquitto is TestOfflineSessionDelivery with Debian's
// mosquitto_sub and mosquitto_pub, against plain mochi and the adapter; the
// subscriber is an MQTT 5 client (Clean Start 0, -x session expiry) or an
// MQTT 3.1.1 client (Clean Session 0).
func TestOfflineSessionMosquitto(t *testing.T) {
	subBin, pubBin := needTool(t, "mosquitto_sub"), needTool(t, "mosquitto_pub")
	for _, version := range []string{"mqttv5", "mqttv311"} {
		for _, name := range []string{"mochi", "adapter"} {
			t.Run(version+"/broker="+name, func(t *testing.T) {
				var addr string
				if name == "mochi" {
					addr = startPlain(t)
				} else {
					m := newManager(t, auth.Config{Authenticator: userAuthn, Authorizer: mustPolicy(t, newsPolicy)})
					_, _, addr = startBroker(t, mochi.Config{Manager: m})
				}
				host, port := splitAddr(t, addr)
				run := func(bin, version string, args ...string) string {
					ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
					defer cancel()
					cmd := exec.CommandContext(ctx, bin, append([]string{"-h", host, "-p", port, "-V", version}, args...)...)
					var out, stderr strings.Builder
					cmd.Stdout, cmd.Stderr = &out, &stderr
					err := cmd.Run()
					// mosquitto_sub exits 27 when -W times out: that is how it stops here.
					if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 27 {
						require.NoError(t, err, "%s %v: %s%s", bin, args, &out, &stderr)
					}
					return out.String()
				}
				sub := []string{"-c", "-i", "mosq-reader", "-q", "1", "-u", "alice", "-t", "news/#", "-v"}
				if version == "mqttv5" {
					sub = append(sub, "-x", "60")
				}
				run(subBin, version, append(sub, "-E")...) // subscribe, then disconnect
				if version == "mqttv5" {
					run(pubBin, "mqttv5", "-u", "pub", "-q", "1", "-t", "news/short", "-m", "gone", "-D", "publish", "message-expiry-interval", "1")
				}
				run(pubBin, "mqttv5", "-u", "pub", "-q", "1", "-t", "news/a", "-m", "kept")
				time.Sleep(3 * time.Second)
				out := run(subBin, version, append(sub, "-C", "2", "-W", "3")...)
				require.Equal(t, "news/a kept", strings.TrimSpace(out), "mosquitto_sub got %q", out)
			})
		}
	}
}

func splitAddr(tb testing.TB, addr string) (host, port string) {
	tb.Helper()
	host, port, err := net.SplitHostPort(addr)
	require.NoError(tb, err)
	return host, port
}
