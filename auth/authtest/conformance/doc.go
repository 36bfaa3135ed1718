// Package conformance is a test suite that any broker adapter of mqttauth can
// run to show that it carries the decisions of an [auth.Session] to real MQTT
// v5 clients correctly. It is meant for tests only.
//
// The adapter supplies a [Factory]: given an [auth.Config], whose
// authenticator and authorizer the suite provides, it starts its broker with
// a plain TCP listener on loopback and returns the address, the
// [auth.Manager] it built and a stop function. [Run] then drives
// eclipse/paho.golang clients over real sockets through every case:
//
//   - connect: single-step pass, and refusals with CONNACK 0x86 (bad user
//     name or password), 0x87 (not authorized), 0x8C (bad authentication
//     method) and 0x88 (server unavailable);
//   - multi-step: two AUTH 0x18 rounds before CONNACK, the method and final
//     data on the CONNACK, and a wrong answer refused with 0x87;
//   - re-authentication: success (AUTH 0x00), failure (DISCONNECT 0x87),
//     another method (DISCONNECT 0x8C), and an unavailable authenticator
//     (AUTH 0x18, the client stays connected and may retry);
//   - expiry: DISCONNECT 0xA0 within a second of the credential's expiry
//     (real time: expiries are 1.5 s);
//   - authorization: PUBACK 0x87 for a denied QoS 1 publish, SUBACK 0x87 for
//     a denied subscription, no delivery of a denied topic;
//   - revocation: [auth.Manager.Recheck] disconnects exactly the client that
//     lost access, with DISCONNECT 0x87.
//
// A test in the adapter's module runs it:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, func(tb testing.TB, cfg auth.Config) conformance.Broker {
//			m, err := auth.NewManager(cfg)
//			...start the broker with the adapter on 127.0.0.1:0...
//			return conformance.Broker{Addr: addr, Manager: m, Stop: stop}
//		})
//	}
package conformance
