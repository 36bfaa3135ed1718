package nats_test

import (
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/mqttauth/mqttauth/abac"
	natsauth "github.com/mqttauth/mqttauth/adapters/nats"
	"github.com/mqttauth/mqttauth/auth"
)

// Subject writes an MQTT topic as nats-server's MQTT listener does.
func ExampleSubject() {
	for _, topic := range []string{"telemetry/temperature", "sites/+/status", "clients/c1/#", "v1.2/x", "/a//b"} {
		s, _ := natsauth.Subject(topic)
		fmt.Printf("%-22s %s\n", topic, s)
	}
	// Output:
	// telemetry/temperature  telemetry.temperature
	// sites/+/status         sites.*.status
	// clients/c1/#           clients.c1.>
	// v1.2/x                 v1//2.x
	// /a//b                  /.a./.b
}

// Permissions gives a principal its policy's grants as NATS permissions.
func ExamplePermissions() {
	policy, _ := abac.Parse([]byte(`
rules:
  - principals: {attributes: [{role: device}]}
    brokerResources:
      - {method: Connect}
      - {method: Publish, topics: ["clients/{principal.clientId}/#"]}
      - {method: Subscribe, topics: ["commands/{principal.clientId}"]}
`))
	p := auth.NewPrincipal(auth.PrincipalInfo{ClientID: "dev-7", Attributes: map[string]string{"role": "device"}})
	perms, _ := natsauth.Permissions(policy, p)
	fmt.Println("publish:", perms.Publish.Allow)
	fmt.Println("subscribe:", perms.Subscribe.Allow)
	// Output:
	// publish: [clients.dev-7.> clients.dev-7]
	// subscribe: [commands.dev-7]
}

// CheckPolicy refuses what NATS permissions cannot express.
func ExampleCheckPolicy() {
	policy, _ := abac.Parse([]byte(`
rules:
  - principals: {usernames: [ops]}
    brokerResources: [{method: Connect}, {method: Subscribe, topics: ["#"]}]
`))
	fmt.Println(natsauth.CheckPolicy(policy.Spec()))
	// Output:
	// nats: rules[0].brokerResources[1].topics[0]: nats: topic filter cannot be expressed as NATS permissions: "#" begins with a wildcard, which in MQTT does not match topics beginning with '$' [MQTT-4.7.2-1] but in NATS does: name the first level
}

// An embedded nats-server whose MQTT and NATS clients authenticate through
// mqttauth.
func ExampleNew() {
	policy, err := abac.Parse([]byte(`
rules:
  - principals: {usernames: [device-1]}
    brokerResources: [{method: Connect}, {method: Publish, topics: ["devices/{principal.username}/#"]}]
`))
	if err != nil {
		panic(err)
	}
	m, err := auth.NewManager(auth.Config{Authenticator: passwordAuthn, Authorizer: policy})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	a, err := natsauth.New(natsauth.Config{Manager: m, Policy: policy})
	if err != nil {
		panic(err)
	}
	defer a.Close()
	srv, err := natsauth.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: "/var/lib/nats", // the MQTT sessions
		MQTT: server.MQTTOpts{Host: "127.0.0.1", Port: 1883},
	}, a)
	if err != nil {
		panic(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		panic("nats-server did not start")
	}
	defer srv.Shutdown()
	// ... serve until the program ends
}

// An auth callout service for stock nats-server nodes configured with
// auth_callout { issuer: <the account's public key>, auth_users: [auth, sys],
// account: AUTH } (see the package documentation).
func ExampleNewCallout() {
	policy, err := abac.LoadFile("policy.yaml")
	if err != nil {
		panic(err)
	}
	m, err := auth.NewManager(auth.Config{Authenticator: passwordAuthn, Authorizer: policy})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	issuer, err := nkeys.FromSeed([]byte(os.Getenv("CALLOUT_ISSUER_SEED"))) // an account seed, SA...
	if err != nil {
		panic(err)
	}
	svc, err := natsgo.Connect("nats://127.0.0.1:4222", natsgo.UserInfo("auth", os.Getenv("AUTH_PASSWORD")))
	if err != nil {
		panic(err)
	}
	defer svc.Close()
	sys, err := natsgo.Connect("nats://127.0.0.1:4222", natsgo.UserInfo("sys", os.Getenv("SYS_PASSWORD")))
	if err != nil {
		panic(err)
	}
	defer sys.Close()
	c, err := natsauth.NewCallout(natsauth.CalloutConfig{Manager: m, Policy: policy, Issuer: issuer,
		Account: "APP", Conn: svc, System: sys})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	// ... answer until the program ends; run two or more replicas.
}
