package gateway_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/gateway"
)

// Replicas of one configuration in front of a broker that speaks only MQTT
// 3.1.1 (here a NATS cluster's MQTT listener): with Coordination they tell
// each other, through the broker, which client identifiers they admit, so
// that an MQTT 5 client whose session a connection through another
// replica took over gets DISCONNECT 0x8E rather than 0x80. Reserve the
// topic to the control connections' user in the broker's ACL.
func ExampleCoordination() {
	m, err := auth.NewManager(auth.Config{Authenticator: auth.Chain{}, Authorizer: auth.AllowAuthenticated})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	cfg := gateway.Config{
		Manager:          m,
		Upstream:         "nats-0.nats:1883",
		UpstreamProtocol: gateway.UpstreamV311,
		UpstreamPassword: []byte("shared with the broker"),
		Coordination: &gateway.Coordination{
			Topic:    gateway.DefaultCoordinationTopic, // "$mqttauth/takeover"
			Username: gateway.DefaultCoordinationUsername,
		},
	}
	g, err := gateway.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	_ = g.Close() // a gateway that never served has no control connection

	// An MQTT 5 broker says 0x8E itself: coordination is refused there.
	cfg.UpstreamProtocol = gateway.UpstreamAuto
	_, err = gateway.New(cfg)
	fmt.Println(errors.Is(err, gateway.ErrCoordination))
	// Output: true
}
