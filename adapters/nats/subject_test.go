package nats_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/abac"
	natsauth "github.com/mqttauth/mqttauth/adapters/nats"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/customauth/authserver"
)

func TestSubject(t *testing.T) {
	for _, c := range []struct{ topic, want string }{
		{"a", "a"},
		{"a/b", "a.b"},
		{"a/+/c", "a.*.c"},
		{"a/#", "a.>"},
		{"a.b/c", "a//b.c"},
		{"/a", "/.a"},
		{"a/", "a./"},
		{"a//b", "a./.b"},
		{"/", "/./"},
		{"//", "/././"},
		{".", "//"},
		{"a./b", "a//.b"},
		{"$SYS/x", "$SYS.x"},
		{"a*b/c>", "a*b.c>"},
	} {
		got, err := natsauth.Subject(c.topic)
		require.NoError(t, err, c.topic)
		require.Equal(t, c.want, got, c.topic)
	}
	for _, bad := range []string{"", "a b", "a\tb", "a\x7fb", "a\nb"} {
		_, err := natsauth.Subject(bad)
		require.ErrorIs(t, err, natsauth.ErrNotExpressible, "%q", bad)
	}
}

func TestCheckPolicy(t *testing.T) {
	ok := []string{
		`{method: Publish, topics: ["a/#", "a/+/b", "a/+", "clients/{principal.clientId}/#", "$SYS/x", "a.b/c"]}`,
		`{method: Subscribe, topics: ["a/#", "a/+/b", "a/+/#", "a/{principal.username}", "a//b"]}`,
	}
	for _, br := range ok {
		x, err := abac.Parse([]byte("rules:\n  - principals: {usernames: [u]}\n    brokerResources: [" + br + "]\n"))
		require.NoError(t, err)
		require.NoError(t, natsauth.CheckPolicy(x.Spec()), br)
	}
	for _, c := range []struct{ br, want string }{
		{`{method: Publish, topics: ["ok", "#"]}`, `rules[0].brokerResources[0].topics[1]: nats: topic filter cannot be expressed as NATS permissions: "#" begins with a wildcard`},
		{`{method: Subscribe, topics: ["+/status"]}`, `"+/status" begins with a wildcard`},
		{`{method: Subscribe, topics: ["devices/+"]}`, `the Subscribe filter "devices/+" ends in '+': nats-server lets a user allowed "devices.*" subscribe "devices.>"`},
		{`{method: Publish, topics: ["a/*/b"]}`, `the level "*" would be a NATS wildcard (in "a/*/b")`},
		{`{method: Subscribe, topics: ["a/>"]}`, `the level ">" would be a NATS wildcard`},
		{`{method: Publish, topics: ["a b"]}`, `holds white space or DEL`},
	} {
		x, err := abac.Parse([]byte("rules:\n  - principals: {usernames: [u]}\n    brokerResources: [" + c.br + "]\n"))
		require.NoError(t, err)
		err = natsauth.CheckPolicy(x.Spec())
		require.ErrorIs(t, err, natsauth.ErrNotExpressible, c.br)
		require.ErrorContains(t, err, c.want)

		// New refuses it too: nothing is widened at run time.
		m := newManager(t, auth.Config{Authenticator: auth.Chain{}, Authorizer: x})
		_, err = natsauth.New(natsauth.Config{Manager: m, Policy: x})
		require.ErrorIs(t, err, natsauth.ErrNotExpressible)
	}
}

func TestPermissions(t *testing.T) {
	x, err := abac.Parse([]byte(`
rules:
  - principals: {usernames: [u]}
    brokerResources:
      - {method: Connect}
      - {method: Publish, topics: ["clients/{principal.clientId}/#", "sites/{principal.attributes.site}/t", "a.b/c"]}
      - {method: Subscribe, topics: ["commands/{principal.clientId}", "all/+/#"]}
  - principals: {usernames: [pubonly]}
    brokerResources:
      - {method: Connect}
      - {method: Publish, topics: ["x"]}
`))
	require.NoError(t, err)
	p := auth.NewPrincipal(auth.PrincipalInfo{Username: "u", ClientID: "c1", Attributes: map[string]string{"site": "s.1"}})
	perms, err := natsauth.Permissions(x, p)
	require.NoError(t, err)
	require.Equal(t, []string{"a//b.c", "clients.c1.>", "clients.c1", "sites.s//1.t"}, perms.Publish.Allow)
	require.Equal(t, []string{"all.*.>", "all.*", "commands.c1"}, perms.Subscribe.Allow)
	require.Empty(t, perms.Subscribe.Deny)

	t.Run("value_that_would_be_a_wildcard_grants_nothing", func(t *testing.T) {
		for _, site := range []string{"*", ">", "a b"} {
			p := auth.NewPrincipal(auth.PrincipalInfo{Username: "u", ClientID: "c1", Attributes: map[string]string{"site": site}})
			perms, err := natsauth.Permissions(x, p)
			require.NoError(t, err)
			require.Equal(t, []string{"a//b.c", "clients.c1.>", "clients.c1"}, perms.Publish.Allow, site)
		}
	})
	t.Run("no_subscribe_grant_denies_every_subscription", func(t *testing.T) {
		perms, err := natsauth.Permissions(x, auth.NewPrincipal(auth.PrincipalInfo{Username: "pubonly"}))
		require.NoError(t, err)
		require.Equal(t, []string{"x"}, perms.Publish.Allow)
		require.Empty(t, perms.Subscribe.Allow)
		require.Equal(t, []string{">"}, perms.Subscribe.Deny)
	})
	t.Run("nothing_granted_allows_nothing", func(t *testing.T) {
		perms, err := natsauth.Permissions(x, auth.NewPrincipal(auth.PrincipalInfo{Username: "nobody"}))
		require.NoError(t, err)
		require.NotNil(t, perms.Publish.Allow, "a nil allow list would allow every publish")
		require.Empty(t, perms.Publish.Allow)
		require.Equal(t, []string{">"}, perms.Subscribe.Deny)
	})
}

// passwordBroker starts the reference custom authentication server with
// users, and a broker whose chain asks it, with policy.
func passwordBroker(t *testing.T, users map[string]authserver.User, policy string) *broker {
	t.Helper()
	x, err := abac.Parse([]byte(policy))
	require.NoError(t, err)
	authn := startCustomAuth(t, users)
	m := newManager(t, auth.Config{Authenticator: auth.Chain{authn}, Authorizer: x})
	return startBroker(t, brokerConfig{manager: m, policy: x})
}

// nats-server maps MQTT topics to subjects; the permissions use Subject.
// Each MQTT topic below, published by an MQTT client, reaches a native
// subscriber on exactly Subject(topic), and an MQTT subscriber gets the
// topic back unchanged.
func TestSubjectMatchesServer(t *testing.T) {
	b := passwordBroker(t, map[string]authserver.User{"pub": {Password: "p"}, "sub": {Password: "s"}}, `
rules:
  - principals: {usernames: [pub]}
    brokerResources: [{method: Connect}, {method: Publish, topics: ["x/#"]}]
  - principals: {usernames: [sub]}
    brokerResources: [{method: Connect}, {method: Subscribe, topics: ["x/#"]}]
`)
	topics := []string{"x/a", "x/a.b/c", "x//b", "x/", "x/.a", "x/a./b", "x/$y", "x/a*b", "x/ü/é", "x/a..b", "x/./."}
	nc, _, err := dialNATS(t, b.url, natsgo.UserInfo("sub", "s"))
	require.NoError(t, err)
	subs := make(map[string]*natsgo.Subscription)
	for _, topic := range topics {
		subj, err := natsauth.Subject(topic)
		require.NoError(t, err)
		s, err := nc.SubscribeSync(subj)
		require.NoError(t, err)
		subs[topic] = s
	}
	require.NoError(t, nc.Flush())
	mqttSub, err := dialMQTT(t, b.mqtt, nil, "msub", "sub", "s")
	require.NoError(t, err)
	require.Equal(t, byte(1), mqttSub.subscribe(t, "x/#"))

	pub, err := dialMQTT(t, b.mqtt, nil, "mpub", "pub", "p")
	require.NoError(t, err)
	for _, topic := range topics {
		require.NoError(t, pub.publish(t, topic, topic))
		msg, err := subs[topic].NextMsg(5 * time.Second)
		require.NoError(t, err, "%q", topic)
		require.Equal(t, topic, string(msg.Data))
		mqttSub.expectMessage(t, topic)
	}
	// No subscription received another topic's message.
	for topic, s := range subs {
		_, err := s.NextMsg(50 * time.Millisecond)
		require.True(t, errors.Is(err, natsgo.ErrTimeout), "%q got a second message", topic)
	}
}

// Why CheckPolicy refuses a Subscribe filter ending in '+': on a plain
// nats-server (no mqttauth), a user allowed to subscribe "a.*" subscribes
// "a.>" and receives "a.b.c", which MQTT's "a/+" does not match.
func TestTrailingWildcardWidensInNATS(t *testing.T) {
	opts := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		Users: []*server.User{
			{Username: "sub", Password: "s", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Allow: []string{}}, Subscribe: &server.SubjectPermission{Allow: []string{"a.*"}}}},
			{Username: "pub", Password: "p"},
		}}
	srv, err := server.NewServer(opts)
	require.NoError(t, err)
	go srv.Start()
	require.True(t, srv.ReadyForConnections(10*time.Second))
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })

	sub, _, err := dialNATS(t, srv.ClientURL(), natsgo.UserInfo("sub", "s"))
	require.NoError(t, err)
	s, err := sub.SubscribeSync("a.>")
	require.NoError(t, err)
	require.NoError(t, sub.Flush())
	pub, _, err := dialNATS(t, srv.ClientURL(), natsgo.UserInfo("pub", "p"))
	require.NoError(t, err)
	require.NoError(t, pub.Publish("a.b.c", []byte("deep")))
	msg, err := s.NextMsg(5 * time.Second)
	require.NoError(t, err, "nats-server no longer lets a.* subscribe a.>: CheckPolicy could allow Subscribe filters ending in '+'")
	require.Equal(t, "a.b.c", msg.Subject)
}
