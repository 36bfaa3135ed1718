// Package gateway puts MQTT v5 enhanced authentication, re-authentication
// and attribute-based authorization in front of any MQTT broker (mosquitto,
// EMQX, VerneMQ, a mochi without hooks). It is the second user of
// [auth.Session], next to the in-process adapter adapters/mochi.
//
// # Model
//
// The gateway owns the client leg; the broker sees only authenticated
// clients, under their verified identity:
//
//   - It accepts a client (TLS with the configuration of
//     (*x509auth.Authenticator).ServerTLSConfig, or plain TCP), reads its
//     CONNECT and runs the CONNECT and AUTH exchanges through an
//     [auth.Session] (X.509, Kubernetes service account tokens, a custom
//     server, SCRAM: any [auth.Authenticator]). Refusals get the Session's
//     CONNACK code (the 3.1.1 return code for MQTT 3.1.1 clients).
//   - Only then it dials the broker (Config.Upstream, plain TCP or TLS,
//     optionally announcing the client's address with the PROXY protocol
//     v2) and sends a CONNECT whose User Name is the principal's user name
//     (as mosquitto's use_identity_as_username), with the client's client
//     identifier, clean start, keep alive, Will and properties, but never
//     its password nor the Authentication Method and Data.
//   - The broker's CONNACK is relayed (session present, Server Keep Alive,
//     Receive Maximum, Retain Available…) with the Session's Authentication
//     Method and Data added, the Maximum Packet Size capped to the
//     gateway's, and the gateway's own Topic Alias Maximum: the gateway
//     resolves the client's topic aliases (it must know the topic to
//     authorize it) and sends full topic names upstream, so the broker's
//     alias map for that direction stays empty. The client's Topic Alias
//     Maximum goes upstream unchanged, and broker-to-client packets are
//     relayed byte for byte (but for the case of a withheld delivery,
//     below), so the aliases the broker uses towards the client stay
//     consistent.
//   - Every PUBLISH is authorized with the current principal; a denied QoS
//     1 or 2 publish is answered with PUBACK or PUBREC 0x87 by the gateway
//     and never reaches the broker, a denied QoS 0 publish is dropped.
//     Every SUBSCRIBE filter is authorized; only the allowed ones are
//     forwarded and the broker's SUBACK is merged with the gateway's 0x87
//     codes in the client's order (when none is allowed, the gateway
//     answers the SUBACK itself). The Will topic is authorized at CONNECT
//     as a Publish: a Will the principal may not publish is refused with
//     CONNACK 0x87. Decisions come from auth.Session.Authorize: the
//     Manager's Authorizer, with a decision cache per connection when it
//     gives one (auth.SessionAuthorizer; abac policies do).
//   - Every delivery from the broker is authorized as a Subscribe of its
//     topic name (as adapters/mochi does), so a policy change or a
//     re-authentication that removes a subscription stops its messages at
//     once: a withheld QoS 1 or 2 message is acknowledged to the broker by
//     the gateway (PUBACK, or PUBREC then PUBCOMP), so the broker's
//     in-flight window never fills. The broker's topic aliases are tracked;
//     when the packet that set an alias was withheld, the next relayed one
//     carries the topic again.
//   - AUTH 0x19 (re-authentication) is answered by the Session and never
//     forwarded. When the credential expires, a re-check
//     ([auth.Manager.Recheck]) revokes access or re-authentication fails,
//     an MQTT v5 client gets DISCONNECT with the reason code and both legs
//     close. The broker's DISCONNECT (for example 0x8E, session taken over)
//     is relayed and both legs close.
//
// # Resources
//
// A connection has one goroutine before it is authenticated and two after
// (one per direction); Close waits for all of them. Each goroutine relays
// what it read to the other leg before it would block reading again
// (several packets that are already buffered go out in one writev, at most
// 64 packets or 64 KiB; on a TLS client leg, the records crypto/tls has
// already received count as buffered: mqttconn.ReadReady), so a leg is read only as fast as the other
// accepts writes: there is no unbounded buffer. An idle connection holds
// no read buffer (each leg takes a 1 KiB buffer from a pool while it has
// unread bytes) and its goroutines wait under few frames, so that GC
// shrinks their stacks to 4 KiB: about 10–13 KiB per idle plain-TCP
// client, about 26–29 KiB per idle mTLS client, where a bare crypto/tls
// server with one goroutine per connection holds about 22 (BENCHMARKS.md,
// "Gateway memory per idle client"). Keep alive is the
// broker's: the client's PINGREQ goes upstream, and when the broker drops
// a silent client the client leg closes with the broker leg. Limits are the
// connection layer's (Config.Limits, an mqttconn.Limits, the same names
// and defaults as the mochi adapter): MaxPacketSize (1 MiB on both legs; a
// larger declared Remaining Length is refused before anything is
// allocated), ConnectTimeout (10 s for the TLS handshake and CONNECT),
// MaxPending (256 connections not yet judged, at most MaxPendingPerSource,
// 32, from one IPv4 address or IPv6 /64; more are closed at once) and
// WriteTimeout (10 s per write).
//
// # The connection layer
//
// CONNECT, the authentication exchange, refusals per protocol version,
// re-authentication, the Will and shutdown are the connection layer's
// (package mqttconn), shared with the mochi adapter; the conformance suite
// runs against the gateway in front of a real mosquitto. The Will goes to
// the broker in the upstream CONNECT (it publishes it); when the client's
// connection ends without a DISCONNECT the broker saw, the gateway asks
// the layer whether the Will may still be published (the principal and the
// policy in force then) and, if not, sends the broker a normal DISCONNECT
// first, which deletes it. Malformed packets (invalid UTF-8 or U+0000 in a
// string, a wildcard in a PUBLISH topic, a bad SUBSCRIBE filter) close the
// connection, after DISCONNECT 0x81 for MQTT 5; nothing is forwarded.
// [Gateway.Shutdown] sends MQTT 5 clients DISCONNECT 0x8B and
// [Gateway.Drain] 0x9C (Use another server) with a Server Reference.
//
// # Running it in front of mosquitto or EMQX
//
// The broker must trust only the gateway: whoever reaches the broker's
// listener directly can claim any identity. Bind that listener to loopback
// or a private network, or make it TLS and require the gateway's client
// certificate (Config.UpstreamTLS with Certificates).
//
// mosquitto 2.0 (which cannot run multi-step AUTH itself):
//
//	listener 1883 127.0.0.1
//	allow_anonymous true        # the gateway authenticated the client
//	acl_file /etc/mosquitto/acl # optional: rules keyed on the identities ("user thermostat")
//
// mosquitto 2.1 and EMQX read the PROXY protocol v2 when told to
// (mosquitto: enable_proxy_protocol 2 on the listener; EMQX: proxy_protocol
// = true on the TCP listener); set Config.ProxyProtocol so that their logs
// and rules see the client's address rather than the gateway's. EMQX: a TCP
// listener on a private address with no authenticator (or the built-in
// database with the identities as user names).
//
// # What the broker sees
//
// One MQTT connection per authenticated client, in the client's protocol
// version (3.1.1 or 5; or 3.1.1 for every client: TRANSLATION, below): User Name = the principal's user name (the
// certificate's identity, the token's subject, the SCRAM user), Client
// Identifier as the client sent it (an empty one is assigned by the broker
// and relayed in CONNACK), the client's clean start, keep alive, Will,
// session expiry, receive maximum and user properties. Never the password,
// the Authentication Method or the Authentication Data, and no AUTH packet.
// Denied PUBLISH packets and SUBSCRIBE filters never arrive.
//
// # Scaling out
//
// A gateway keeps no state beyond its connections: run stateless replicas
// behind a TCP load balancer in front of a broker cluster (EMQX, VerneMQ,
// HiveMQ). The cluster owns sessions and takeover: a client that reconnects
// through another replica resumes its persistent session, and the
// broker's DISCONNECT 0x8E to the old connection is relayed. Trust bundles,
// CRLs, SCRAM stores and ABAC policies are files that Kubernetes ConfigMaps
// and Secrets distribute to every replica; each replica watches them and
// re-checks its own connections ([auth.Manager.Recheck]). Nothing is
// shared between replicas. TestNATSCluster runs two gateways in front of
// a three-node NATS cluster (MQTT 3.1.1 upstream): a persistent session
// moves between them with its queued QoS 1 messages, a connection through
// one takes the session over from a client on the other, and a
// revocation reaches the client through the gateway that holds it. A
// 3.1.1 broker closes the connection it takes a session from without
// saying why; with Config.Coordination the gateways tell each other
// through the broker and the MQTT 5 client that lost its session gets
// DISCONNECT 0x8E all the same (TAKEOVER, below). To leave, a replica drains
// ([Gateway.Drain]: DISCONNECT 0x9C with another replica's address, and
// [Gateway.DrainCheck] failing on /readyz from that moment).
//
// # MQTT 3.1.1
//
// 3.1.1 clients are served with 3.1.1 packets: refusals use the 3.1.1
// return codes ([auth.ReasonCode.ConnackV311]), a denied QoS 1 publish gets
// a plain PUBACK and a denied QoS 2 publish PUBREC then PUBCOMP from the
// gateway (3.1.1 has no failure code for them: the message is dropped), a
// denied subscription the SUBACK failure code 0x80, and an ending session
// closes the connection without a DISCONNECT. paho.golang's packets package
// decodes MQTT v5 only, so the gateway frames every packet itself and
// decodes the 3.1.1 forms of CONNECT, PUBLISH, SUBSCRIBE and SUBACK.
//
// # Readiness
//
// A gateway whose broker is down refuses every client that authenticates
// (CONNACK 0x88 Server unavailable). [NewUpstreamCheck] is the readiness
// check of the broker leg, for an admin listener's /readyz: it dials the
// broker (TLS handshake included) without an MQTT CONNECT.
//
// # Connect cost and TLS session resumption
//
// A client leg with Config.TLS issues TLS 1.3 session tickets (crypto/tls's
// default). A resumed session is still judged: crypto/tls calls
// x509auth's VerifyConnection on resumptions, which re-checks the
// session's certificates against the current trust set and CRLs (a
// revoked certificate, or one whose CA was removed, fails the handshake),
// and the Authenticator and its RevocationChecker run at CONNECT as on a
// full handshake. Most of a connect's cost is the TLS key exchange:
// crypto/tls's default with Go clients is the hybrid post-quantum
// X25519MLKEM768. A listener that sets CurvePreferences to
// []tls.CurveID{tls.X25519} connects faster (BENCHMARKS.md, "Gateway
// connects profiled") but gives up the post-quantum half: traffic recorded
// today can be decrypted by whoever breaks X25519 later. It is the
// operator's choice, not the default. Clients that offer only classical
// groups (OpenSSL before 3.5: Node 20, Debian 12's mosquitto_pub) get
// X25519 either way.
//
// # TRANSLATION: MQTT 5 clients in front of an MQTT 3.1.1 broker
//
// Config.UpstreamProtocol chooses the broker leg's version: auto (the
// default) speaks the client's; 3.1.1 speaks MQTT 3.1.1 for every client,
// for brokers that have no MQTT 5 (NATS's MQTT listener, RabbitMQ 3.x's
// rabbitmq_mqtt); 5 refuses MQTT 3.1.1 clients with return code 1. An
// MQTT 5 client of a 3.1.1 broker keeps everything the gateway does
// itself — enhanced authentication, re-authentication, per-message
// authorization with reason codes, server DISCONNECTs with reason codes,
// topic aliases — and gets an honest translation of the rest: every
// CONNACK, SUBACK, PUBACK and UNSUBACK it sees says what the broker did,
// and what 3.1.1 cannot express is refused with a reason code, never
// dropped silently. Each row is a case of TestTranslation (or the test
// named).
//
//	Client (MQTT 5)                    Broker (3.1.1)                      Client sees
//	CONNECT Clean Start 1, Expiry 0    Clean Session 1                     session present 0
//	CONNECT Clean Start 0, Expiry > 0  Clean Session 0                     the broker's session present
//	CONNECT Clean Start 1, Expiry > 0  Clean Session 1 on a leg of its     session present 0; the new session
//	                                   own, DISCONNECT, then Clean         persists (the broker keeps it for as
//	                                   Session 0                           long as it keeps sessions: 3.1.1 has
//	                                                                       no expiry, nor the DISCONNECT's)
//	CONNECT Clean Start 0, Expiry 0    Clean Session 1 (an expiry-0        session present 0
//	                                   session must not outlive the
//	                                   connection)
//	Keep Alive, Will (topic, payload,  the same; User Name = the           the broker's keep alive
//	QoS, retain)                       principal's identity, Password =
//	                                   Config.UpstreamPassword
//	Will Delay Interval > 0            not sent                            CONNACK 0x83 with a Reason String
//	Will properties, CONNECT           dropped (3.1.1 has none; the
//	properties                         gateway acts on Receive Maximum,
//	                                   Maximum Packet Size, Topic Alias
//	                                   Maximum, Request Problem Info)
//	empty Client Identifier            "mqttauth-" + 24 random hex digits  Assigned Client Identifier
//	CONNACK return code 2, 3, 4, 5     —                                   0x85, 0x88, 0x86, 0x87
//	CONNACK return code 1              —                                   0x88 (the gateway's broker, not
//	                                                                       the client, lacks the version)
//	CONNACK success                    —                                   Subscription Identifiers and
//	                                                                       Shared Subscriptions not available;
//	                                                                       the gateway's Topic Alias Maximum
//	                                                                       and Maximum Packet Size
//	PUBLISH (alias resolved)           topic, QoS, retain, DUP, payload;   PUBACK/PUBREC from the broker, or
//	                                   properties dropped (Message         0x87 from the gateway (never sent up)
//	                                   Expiry, Content Type, Response
//	                                   Topic, Correlation Data, User
//	                                   Properties: 3.1.1 cannot carry them)
//	PUBACK/PUBREC/PUBREL/PUBCOMP       bare acknowledgements (the packet   broker acknowledgements relayed as
//	with codes or properties           identifier)                         they are (a bare one is success)
//	PUBREC >= 0x80 to a delivery       PUBREC; the broker's PUBREL is      the QoS 2 flow ends there, as in MQTT 5
//	                                   answered by the gateway
//	deliveries (3.1.1 PUBLISH)         —                                   MQTT 5 PUBLISH, no properties
//	                                                                       (no message expiry: the broker's
//	                                                                       queued and retained messages never
//	                                                                       expire); at most Receive Maximum
//	                                                                       unacknowledged (the gateway stops
//	                                                                       reading the broker meanwhile); one
//	                                                                       above Maximum Packet Size discarded
//	                                                                       and acknowledged to the broker
//	SUBSCRIBE, QoS only                filter and QoS                      the broker's granted QoS
//	SUBSCRIBE with a Subscription      not sent                            0xA1 Subscription Identifiers not
//	Identifier                                                             supported, every filter
//	$share/... filter                  not sent                            0x9E Shared Subscriptions not supported
//	No Local, Retain As Published,     not sent                            0x83 Implementation specific error,
//	Retain Handling 1 or 2                                                 with a Reason String naming the
//	                                                                       option (unless Request Problem
//	                                                                       Information is 0)
//	filter the policy denies           not sent                            0x87 (TestTranslation, conformance)
//	broker SUBACK 0x80                 —                                   0x80 Unspecified error
//	                                                                       (TestTranslationBrokerSubackFailure)
//	UNSUBSCRIBE                        the filters, no properties          UNSUBACK 0x00 per filter (3.1.1 does
//	                                                                       not say whether one existed)
//	PINGREQ                            PINGREQ                             the broker's PINGRESP
//	DISCONNECT 0x00                    DISCONNECT (the Will is discarded)
//	DISCONNECT 0x04 or >= 0x80         closed without DISCONNECT (the
//	                                   broker publishes the Will), unless
//	                                   the Will may no longer be published:
//	                                   then DISCONNECT first
//	the broker closes the leg, with    —                                   DISCONNECT 0x8E "another connection
//	Config.Coordination, after another                                     took the session over" when the client
//	admission of the client identifier                                     identifier was admitted again (through
//	(a takeover)                                                           another gateway or this one) after this
//	                                                                       connection's admission and at most
//	                                                                       Window (10 s) before the close, the
//	                                                                       notice awaited up to Grace (250 ms)
//	                                                                       after it (TestCoordinatedTakeover,
//	                                                                       TestNATSCluster, TestRabbitMQ,
//	                                                                       TestTakenOverRule)
//	the broker closes the leg,         —                                   DISCONNECT 0x80 "the broker closed
//	otherwise (no coordination, no                                         the connection"
//	notice: its own authorization,
//	keep alive, …)
//	AUTH 0x19                          — (the gateway's Session)           AUTH 0x18/0x00 or DISCONNECT
//
// Brokers. NATS 2.15's MQTT listener (TestNATS: the stock nats-server,
// built by the test from the module proxy and cached, JetStream on)
// needs nothing special. RabbitMQ 3.10 (TestRabbitMQ): it refuses a User Name without a
// Password, so set Config.UpstreamPassword (and check it in RabbitMQ's auth
// backend, for example rabbitmq_auth_backend_http, or give each identity
// that password); it reads a colon in the User Name as "vhost:user"
// unless rabbitmq_mqtt's ignore_colons_in_username is true (advanced.config:
// [{rabbitmq_mqtt, [{ignore_colons_in_username, true}]}]), and K8S-SAT
// identities (system:serviceaccount:NS:NAME) have colons; it grants QoS 2
// subscriptions as QoS 1; a subscription its own authorization refuses
// closes the connection (the client gets DISCONNECT 0x80, above).
//
// # TAKEOVER: gateways coordinated through a 3.1.1 broker
//
// A second connection with a client identifier takes the session over
// from the first [MQTT-3.1.4-3]. An MQTT 5 broker tells the first client
// DISCONNECT 0x8E (Session taken over), which the gateway relays; an MQTT
// 3.1.1 broker just closes the connection, and the gateway in front of it
// cannot tell a takeover from any other close: when the second connection
// comes through another gateway (stateless replicas behind a load
// balancer), only that gateway knows. Config.Coordination lets the
// gateways tell each other through the broker itself, so it works for any
// number of replicas and any 3.1.1 broker or cluster, with nothing shared
// but the broker:
//
//   - Each gateway keeps one control connection to the broker (MQTT 3.1.1,
//     clean session, its own client identifier: Coordination.ClientIDPrefix
//     and a random instance identifier; Username, Password), subscribed to
//     Coordination.Topic ($mqttauth/takeover by default) at QoS 0. It
//     reconnects with a jittered backoff (100 ms to 10 s), pings every 15 s,
//     and ends with Close or Shutdown. [Gateway.CoordinationCheck] says
//     whether it is up.
//   - When a gateway admits a client (after authentication, before it
//     dials the client's broker leg) it records the admission and publishes
//     a notice on the topic at QoS 1, and waits for the broker's PUBACK for
//     at most NoticeTimeout (1 s; not at all while the control connection
//     is down): the notice is in the broker before the client's CONNECT. A
//     notice names the gateway's instance identifier and the first 16 bytes
//     of the SHA-256 of the client identifier: no identifier in clear, no
//     user name, principal or credential.
//   - When the broker closes an MQTT 5 client's leg without a DISCONNECT
//     (3.1.1 has none), the client gets 0x8E if its client identifier was
//     admitted again after this connection's admission — a notice from
//     another gateway, or a later admission through this one — no more
//     than Window (10 s) before the close, waiting up to Grace (250 ms)
//     after the close for the notice to arrive; otherwise 0x80, as without
//     coordination. A gateway ignores its own notices as the broker echoes
//     them.
//
// The worst a missing or late notice does is a 0x80 where 0x8E was due; the
// worst a forged one does is a 0x8E where 0x80 was due: a notice never
// closes a connection, only the broker does. Nor does it delay one beyond
// Grace, or an admission beyond NoticeTimeout.
//
// It is off by default (Config.Coordination nil): it costs every admitted
// client a round trip to the broker before its leg is dialed and every
// gateway a connection, it needs the broker's ACL to reserve the topic
// (below), and it buys only a more precise reason code. It needs
// UpstreamProtocol 3.1.1 (an MQTT 5 broker says 0x8E itself).
//
// Security. Clients through the gateway can never use the coordination
// topic, whatever the policy says: a PUBLISH to it or under it is refused
// (PUBACK or PUBREC 0x87; dropped at QoS 0), a SUBSCRIBE filter that can
// match it gets 0x87 (matched as the broker matches: a filter that begins
// with a wildcard matches no topic that begins with '$' [MQTT-4.7.2-1], so
// "#" is served and the default topic begins with '$'), a delivery on it
// is withheld (RabbitMQ's topic exchange matches "#" with '$' topics:
// TestRabbitMQ checks that a "#" subscriber gets no notice), a Will
// on it is refused with CONNACK 0x87, and a client identifier that
// begins with ClientIDPrefix with CONNACK 0x85, so that no client takes a
// control connection over (TestCoordinationTopicRefused). Clients that
// reach the broker directly must be kept off the topic by the broker's
// ACL: let only the control connections' Username publish and subscribe
// to it (mosquitto: "user mqttauth-gateway" / "topic readwrite
// $mqttauth/takeover"; NATS: permissions on the subject
// "$mqttauth.takeover" for that user; RabbitMQ: topic permissions on the
// amq.topic exchange, routing key "$mqttauth.takeover").
//
// # Use
//
//	m, _ := auth.NewManager(auth.Config{Authenticator: auth.Chain{x509Authn}, Authorizer: policy})
//	g, _ := gateway.New(gateway.Config{
//		Manager:  m,
//		Upstream: "127.0.0.1:1883", // mosquitto bound to loopback
//		TLS:      x509Authn.ServerTLSConfig(&tls.Config{Certificates: serverCerts}),
//	})
//	ln, _ := net.Listen("tcp", ":8883")
//	go g.Serve(ln)
//	defer g.Close()
package gateway
