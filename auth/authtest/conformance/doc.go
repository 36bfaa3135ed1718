// Package conformance is a test suite that every broker path of mqttauth
// runs to show that it carries the decisions of an [auth.Session] to real
// MQTT clients correctly. It is the specification of the connection layer
// (package mqttconn): a new adapter passes it or is not done. It is meant
// for tests only.
//
// The adapter supplies a [Factory]: given a [Setup] (the suite's
// [auth.Config], whose authenticator and authorizer come from a [Fixture],
// the connection layer's mqttconn.Limits of the case and, in the tls
// cases, the server's TLS configuration) it starts its broker with a
// listener on 127.0.0.1, plain TCP, or TLS with [Setup].TLS when that is
// set (the suite fails a case whose handshake does not reach that
// configuration: it never skips it), and returns a [Broker]:
// the address, the [auth.Manager] it built, its orderly Shutdown and Drain,
// and a stop function. [Run] then drives clients over real sockets through
// every case, eclipse/paho.golang MQTT 5 clients where they fit and a
// small raw-packet client for MQTT 3.1.1, malformed packets and
// connections dropped without DISCONNECT:
//
//   - connect: single-step pass, and refusals with CONNACK 0x86 (bad user
//     name or password), 0x87 (not authorized), 0x8C (bad authentication
//     method) and 0x88 (server unavailable);
//   - multi-step: two AUTH 0x18 rounds before CONNACK, the method and final
//     data on the CONNACK, and a wrong answer refused with 0x87;
//   - re-authentication: success (AUTH 0x00), failure (DISCONNECT 0x87),
//     another method (DISCONNECT 0x8C), an unavailable authenticator
//     (AUTH 0x18, the client stays connected and may retry), and the rate
//     bound (Config.ReauthInterval 1 s, ReauthBurst 3: AUTH 0x00 three
//     times in a tight loop, then DISCONNECT 0x96);
//   - expiry: DISCONNECT 0xA0 within a second of the credential's expiry
//     (real time: expiries are 1.5 s);
//   - authorization: PUBACK 0x87 for a denied QoS 1 publish, SUBACK 0x87 for
//     a denied subscription, no delivery of a denied topic;
//   - revocation: [auth.Manager.Recheck] disconnects exactly the client that
//     lost access, with DISCONNECT 0x87;
//   - the Will, authorized at CONNECT and again when it is to be published:
//     a Will topic the principal may not publish refuses the CONNECT with
//     0x87 (MQTT 5), return code 5 (MQTT 3.1.1), and leaves no retained
//     message when the Will was retained; an allowed Will is published
//     when the connection drops without DISCONNECT; a Will whose right a
//     policy reload removed ([Fixture.RevokeWillTopic] and a re-check that
//     disconnects nobody) and the Will of a session that expired are not
//     published, while a control Will still is;
//   - MQTT 3.1.1 refusals: for every reason code the authenticator chain
//     can refuse with (user names "fail:0xNN" and "unavailable"), the
//     return code of [auth.ReasonCode.ConnackV311] or no CONNACK at all,
//     never 0;
//   - admission: with Limits{MaxPending: 8, MaxPendingPerSource: 2}, the
//     third silent connection from 127.0.0.2 is closed at once, and a
//     client from 127.0.0.1 connects within a second;
//   - shutdown: Shutdown sends DISCONNECT 0x8B to every MQTT 5 client,
//     closes MQTT 3.1.1 clients without a packet and stops accepting; Drain
//     sends DISCONNECT 0x9C with the Server Reference;
//   - malformed packets (MQTT 5.0 section 4.13): invalid UTF-8 in the
//     Authentication Method, U+0000 in the client identifier (closed, at
//     most after CONNACK 0x81) and a wildcard in a PUBLISH topic name
//     (closed, at most after DISCONNECT 0x81 or 0x82, nothing forwarded);
//   - the exchange timeout from configuration: Config.ExchangeTimeout 2 s
//     refuses an unanswered challenge with CONNACK 0x87 after 2 s to
//     3.5 s; with 4 s, an answer after 2.5 s passes;
//   - TLS 1.3 session resumption, with Setup.TLS built by
//     x509auth's ServerTLSConfig over a truststore the case controls (the
//     authtest PKI; Setup.Auth's Authenticator is that x509auth
//     Authenticator): a full mTLS handshake and CONNECT pass and give a
//     session ticket, and a resumed connection with it passes (DidResume,
//     CONNACK 0x00). Then the client's certificate loses trust, and its
//     resumption is refused: a CRL revoking it in the hot truststore, or
//     its CA removed from it, with a bad_certificate alert in the
//     handshake (the client did resume, and gets no CONNACK); an OCSP
//     responder (revocation/revocationtest) answering "revoked" to the
//     x509auth RevocationChecker, with CONNACK 0x87 at CONNECT. A full
//     handshake is refused the same way. When the Factory sets
//     [Broker].Saw, the broker must have seen the resumed client and
//     never the revoked one.
//
// Cases wait at most [Timeout] for what must happen and [Quiet] for what
// must not.
//
// A test in the adapter's module runs it:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, func(tb testing.TB, s conformance.Setup) conformance.Broker {
//			m, err := auth.NewManager(s.Auth)
//			...start the broker with the adapter on 127.0.0.1:0 (TLS
//			with s.TLS when it is not nil), its connection layer with
//			s.Limits...
//			return conformance.Broker{Addr: addr, Manager: m,
//				Shutdown: srv.Shutdown, Drain: srv.Drain, Stop: stop}
//		})
//	}
package conformance
