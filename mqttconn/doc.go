// Package mqttconn is the connection layer that every way into a broker
// shares: the mochi-mqtt hook (adapters/mochi), the gateway in front of any
// broker (package gateway), and whatever adapter comes next. It sits
// between the core (package auth: Session, Manager) and the brokers, and
// owns everything about a client connection that does not depend on the
// broker:
//
//   - admission: a global bound on connections that have not authenticated
//     yet, with a per-source share (one IPv4 address, or one IPv6 /64, holds
//     at most Limits.MaxPendingPerSource of them), a deadline for the TLS
//     handshake and the CONNECT, and backoff when accept fails
//     ([Server.Serve]);
//   - CONNECT: the malformed-packet checks of MQTT 5.0 section 1.5 and 4.13
//     ([Connect.Validate]), the auth.Request ([Connect.Request]) and the
//     scrubbing of the password and Authentication Data once judged;
//   - the enhanced-authentication exchange, read with the deadline of the
//     Manager's ExchangeTimeout ([Client.Connect]);
//   - the Will, authorized as a Publish at CONNECT (a forbidden Will topic
//     refuses the CONNECT with 0x87, return code 5 for MQTT 3.1.1) and
//     again when it is about to be published ([Client.WillAllowed]);
//   - refusals and server packets encoded per protocol version ([Encode]):
//     an MQTT 3.1.1 client gets a return code from 1 to 5 or no CONNACK at
//     all, never 0 for a refusal, and never a DISCONNECT or an AUTH;
//   - re-authentication after CONNACK ([Client.Auth]), whose rate the
//     Session bounds (auth.Config.ReauthInterval);
//   - the deny record of refusals the layer decides, and orderly shutdown
//     ([Server.Shutdown]: DISCONNECT 0x8B; [Server.Drain]: 0x9C Use another
//     server with a Server Reference).
//
// What belongs to one broker stays in its adapter: mochi's offline
// sessions and its success CONNACK, the gateway's upstream relay and topic
// aliases. An adapter gives the layer a [Transport] per connection: how to
// write an encoded packet, how to read the client's next packet during the
// exchange, and how to close.
//
// The conformance suite (auth/authtest/conformance) is this package's
// specification: every adapter runs it against a real broker.
package mqttconn
