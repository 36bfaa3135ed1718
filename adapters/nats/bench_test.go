package nats_test

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/abac"
	natsauth "github.com/mqttauth/mqttauth/adapters/nats"
	"github.com/mqttauth/mqttauth/auth"
)

const benchUsers = 100

// benchPolicy grants user uI its own subjects, as the static users of the
// comparison have them.
func benchPolicy(tb testing.TB) *abac.Policy {
	tb.Helper()
	x, err := abac.Parse([]byte(`
rules:
  - principals: {attributes: [{role: device}]}
    brokerResources:
      - {method: Connect}
      - {method: Publish, topics: ["devices/{principal.username}/#"]}
      - {method: Subscribe, topics: ["commands/{principal.username}"]}
`))
	require.NoError(tb, err)
	return x
}

// passwordAuthn passes user uI with password "pw-uI": the cost of the
// credential check itself is not what is measured.
var passwordAuthn = auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
	if !req.HasUsername || !req.HasPassword {
		return auth.Result{}
	}
	if subtle.ConstantTimeCompare(req.Password, []byte("pw-"+req.Username)) != 1 {
		return auth.FailResult(auth.BadUserNameOrPassword, nil)
	}
	return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: req.Username, Attributes: map[string]string{"role": "device"}}))
})

// startBenchServer starts an embedded nats-server (JetStream, MQTT) either
// with the in-process Authentication or with the same users and
// permissions as static users.
func startBenchServer(b *testing.B, withMQTTAuth bool) (natsURL, mqttAddr string) {
	b.Helper()
	opts := &server.Options{ServerName: "bench", Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: b.TempDir(),
		NoLog: true, NoSigs: true, MQTT: server.MQTTOpts{Host: "127.0.0.1", Port: -1}}
	var srv *server.Server
	var err error
	if withMQTTAuth {
		x := benchPolicy(b)
		m, err := auth.NewManager(auth.Config{Authenticator: passwordAuthn, Authorizer: x, Logger: quiet})
		require.NoError(b, err)
		b.Cleanup(func() { _ = m.Close() })
		a, err := natsauth.New(natsauth.Config{Manager: m, Policy: x, Logger: quiet})
		require.NoError(b, err)
		b.Cleanup(func() { _ = a.Close() })
		srv, err = natsauth.NewServer(opts, a)
		require.NoError(b, err)
	} else {
		for i := range benchUsers {
			u := fmt.Sprintf("u%d", i)
			opts.Users = append(opts.Users, &server.User{Username: u, Password: "pw-" + u, Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{"devices." + u + ".>", "devices." + u}},
				Subscribe: &server.SubjectPermission{Allow: []string{"commands." + u}},
			}})
		}
		srv, err = server.NewServer(opts)
		require.NoError(b, err)
	}
	go srv.Start()
	require.True(b, srv.ReadyForConnections(10*time.Second))
	b.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	vz, err := srv.Varz(nil)
	require.NoError(b, err)
	return srv.ClientURL(), fmt.Sprintf("127.0.0.1:%d", vz.MQTT.Port)
}

// mqttConnect writes an MQTT 3.1.1 CONNECT (clean session) and reads the
// CONNACK, then disconnects.
func mqttConnect(addr, id, user, pass string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	str := func(b *bytes.Buffer, s string) {
		_ = binary.Write(b, binary.BigEndian, uint16(len(s)))
		b.WriteString(s)
	}
	var body bytes.Buffer
	str(&body, "MQTT")
	body.WriteByte(4)    // protocol level 3.1.1
	body.WriteByte(0xC2) // user name, password, clean session
	_ = binary.Write(&body, binary.BigEndian, uint16(30))
	str(&body, id)
	str(&body, user)
	str(&body, pass)
	pkt := []byte{0x10, byte(body.Len())}
	pkt = append(pkt, body.Bytes()...)
	if _, err := conn.Write(pkt); err != nil {
		return err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil {
		return err
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		return fmt.Errorf("CONNACK % x", ack)
	}
	_, err = conn.Write([]byte{0xE0, 0})
	return err
}

// BenchmarkConnect compares the connect rate of the same nats-server
// with the in-process Authentication (an auth.Session per client,
// permissions from the abac policy) and with the same users and
// permissions as static users. Both servers run side by side and every
// iteration connects once to each, in alternating order, each connection
// closed before the next, so that the load of a shared machine falls on
// both alike; ns/op is the pair. It reports the mean time of each and
// mqttauth/static, the in-process mode's connect rate relative to the
// static users' (1 means as fast).
func BenchmarkConnect(b *testing.B) {
	for _, proto := range []string{"nats", "mqtt"} {
		b.Run("proto="+proto, func(b *testing.B) {
			var urls, mqttAddrs [2]string
			urls[0], mqttAddrs[0] = startBenchServer(b, false)
			urls[1], mqttAddrs[1] = startBenchServer(b, true)
			connect := func(mode, i int) time.Duration {
				u := fmt.Sprintf("u%d", i%benchUsers)
				start := time.Now()
				if proto == "mqtt" {
					if err := mqttConnect(mqttAddrs[mode], fmt.Sprintf("c%d", i), u, "pw-"+u); err != nil {
						b.Fatal(err)
					}
					return time.Since(start)
				}
				nc, err := natsgo.Connect(urls[mode], natsgo.UserInfo(u, "pw-"+u), natsgo.NoReconnect())
				if err != nil {
					b.Fatal(err)
				}
				nc.Close()
				return time.Since(start)
			}
			var spent [2]time.Duration
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				first := i % 2
				spent[first] += connect(first, i)
				spent[1-first] += connect(1-first, i)
				i++
			}
			n := float64(i)
			b.ReportMetric(float64(spent[0].Nanoseconds())/n, "static-ns/connect")
			b.ReportMetric(float64(spent[1].Nanoseconds())/n, "mqttauth-ns/connect")
			b.ReportMetric(float64(spent[0])/float64(spent[1]), "mqttauth/static")
		})
	}
}

// BenchmarkPermissions is the cost of the permission mapping at connect:
// the principal's grants from a policy of 10 or 100,000 per-device rules,
// mapped to NATS subjects.
func BenchmarkPermissions(b *testing.B) {
	for _, n := range []int{10, 100_000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			spec := abac.Spec{}
			for i := range n {
				spec.Rules = append(spec.Rules, abac.Rule{
					Principals: abac.Principals{ClientIDs: []string{fmt.Sprintf("dev-%d", i)}},
					BrokerResources: []abac.BrokerResource{
						{Method: abac.MethodConnect},
						{Method: abac.MethodPublish, Topics: []string{"clients/{principal.clientId}/#", fmt.Sprintf("telemetry/%d/temperature", i)}},
						{Method: abac.MethodSubscribe, Topics: []string{"commands/{principal.clientId}", "broadcast/#"}},
					},
				})
			}
			x, err := abac.Compile(spec)
			require.NoError(b, err)
			p := auth.NewPrincipal(auth.PrincipalInfo{ClientID: fmt.Sprintf("dev-%d", n/2)})
			perms, err := natsauth.Permissions(x, p)
			require.NoError(b, err)
			require.Len(b, perms.Publish.Allow, 3)
			require.Len(b, perms.Subscribe.Allow, 3)
			runtime.GC() // the compiled policy is marked before timing, not during it
			b.ReportAllocs()
			for b.Loop() {
				if _, err := natsauth.Permissions(x, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
