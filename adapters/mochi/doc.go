// Package mochi connects mqttauth to mochi-mqtt (github.com/mochi-mqtt/server/v2
// v2.7.9): a mochi hook that gives every client an [auth.Session], so that
// the broker authenticates with any [auth.Authenticator] (X.509, Kubernetes
// service account tokens, a custom server, multi-step SCRAM-like methods),
// authorizes with the [auth.Authorizer] of auth.Config (abac policies), supports MQTT v5
// re-authentication, and disconnects clients whose credential expires or
// whose access is revoked.
//
// # Model
//
// The Session decides; the [Hook] carries its decisions to mochi:
//
//   - OnConnect builds an auth.Request from the CONNECT packet (user name
//     and password with their presence flags, Authentication Method and
//     Data, the *tls.Conn's connection state, remote address, listener,
//     protocol version) and runs the whole exchange before CONNACK: it
//     writes AUTH 0x18 itself and reads the client's AUTH with a deadline
//     (mochi's read loop has not started yet), handing any other packet to
//     Session.OtherPacket. A refusal is sent with mochi's SendConnack and
//     the exact code (0x86, 0x87, 0x88, 0x8C, 0x82…), and OnConnect fails;
//     mochi's own OnConnectAuthenticate path could only send 0x86.
//     OnPacketEncode puts the method and the final Authentication Data on
//     the success CONNACK.
//   - OnAuthPacket handles AUTH after CONNACK (re-authentication): the hook
//     writes AUTH 0x00 or 0x18, or DISCONNECT with the Session's code and
//     reason string and closes.
//   - OnACLCheck answers publish, subscribe and delivery checks through the
//     session ([auth.Session.Authorize]), that is with the one Authorizer of
//     auth.Config and the session's current principal; a delivery is checked
//     as a Subscribe of the topic name. An Authorizer that implements
//     [auth.SessionAuthorizer] (an *abac.Policy or *abac.Watcher) gives each
//     session its own decision cache (an abac.Cache), which forgets its
//     decisions on re-authentication, re-check and policy reload. The
//     session is found through a sync.Map keyed by *mqtt.Client, whose
//     reads take no lock; a cache hit allocates nothing. The package imports
//     auth and mochi only.
//   - The Session ends connections on its own through the hook (expiry,
//     [auth.Manager.Recheck], a stalled exchange): DISCONNECT goes out
//     through mochi's DisconnectClient, which always writes the reason code
//     byte (paho.golang cannot parse a DISCONNECT without one), then the
//     client is stopped. MQTT 3 clients are closed without a DISCONNECT.
//   - OnDisconnect closes the session; clients that fail between OnConnect
//     and CONNACK, for which mochi calls no OnDisconnect, are swept.
//     Persistent sessions are the exception below.
//
// # Offline persistent sessions
//
// mochi keeps the session of a client that connected with Clean Start 0
// and a session expiry interval (MQTT 3: Clean Session 0) after its
// connection ends, and queues QoS 1 and 2 messages for it; it checks every
// delivery with OnACLCheck, queueing for an offline client included. The
// rule the hook applies:
//
//   - A subscription authorized while connected keeps receiving while the
//     client is offline. Each delivery is checked as a Subscribe of the
//     topic, with the principal the session last had and the policy in
//     force at the time of the delivery (a reload applies), until that
//     principal's expiry (Principal.Expiry, compared with Config.Now).
//     An offline client publishes nothing.
//   - Nothing is kept when the session itself ended the connection
//     (credential expiry, a re-check that revoked it, a failed
//     re-authentication): the queue then receives nothing.
//   - The principal is dropped when mochi expires the session
//     (OnClientExpired), when a new connection takes the client id over or
//     resumes it (OnSessionEstablished), and when the server stops, so
//     [Hook.Len] returns to the live count; [Hook.Offline] counts them.
//   - A connection that resumes the session (Clean Start 0) is re-checked
//     with its own principal before mochi hands the session over
//     (OnSessionEstablish): subscriptions it may not make are removed, and
//     queued messages it may not receive are dropped before mochi resends
//     them, so a different principal reusing the client id inherits nothing
//     it could not have subscribed to. A queued message whose topic mochi
//     replaced with a topic alias cannot be checked and is dropped.
//   - [auth.Manager.Recheck] re-checks connected sessions only; an offline
//     session is checked per delivery against the current policy, and its
//     credential is checked again when it reconnects.
//
// # Resumed sessions
//
// When a client resumes its session, mochi v2.7.9 resends the session's
// QoS 1 and 2 PUBLISH packets, those sent and not acknowledged and those
// queued while it was offline, in an arbitrary order:
// Client.ResendInflightMessages (clients.go:304) takes them from
// Inflight.GetAll (inflight.go:74), which ranges over a map keyed by packet
// id and sorts on uint16(Created), the second the server received the
// message. The messages of one second come out in the map's random order,
// and the order wraps every 65,536 s. And mochi registers the new
// connection (server.go:458) before it writes the CONNACK and resends
// (server.go:460, 468): a message delivered meanwhile is written at once by
// the connection's write loop (server.go:1101), among the resent ones or
// even before the CONNACK. Plain mochi keeps both bugs.
//
// The hook restores publish order [MQTT-4.6.0-1] [MQTT-4.6.0-6] without
// changing mochi's state:
//
//   - In OnSessionEstablish, before mochi hands the session over, it
//     orders the session's PUBLISH packets by Created, then by packet id in
//     the order mochi allocates them (increasing, wrapping). As mochi
//     writes each resent PUBLISH (each passes through OnPacketEncode, and
//     only those carry DUP=1), the hook writes the next packet of that
//     order instead, then those queued after the order was taken. The same
//     packets go out, with their packet ids and DUP=1, in publish order.
//   - A live PUBLISH for the connection waits in OnPacketEncode, on mochi's
//     write loop, until OnSessionEstablished (mochi has then written the
//     CONNACK and resent the session), or until the connection closes, or
//     at most 10 s. A message both resent and delivered live then reaches
//     the client twice, resent first, as QoS 1 allows.
//
// What the hook cannot change, all of it mochi's:
//
//   - Messages delivered while mochi hands the session over, between its
//     copy of the old connection's queue (server.go:574) and the
//     registration of the new connection (server.go:458), go to the old
//     connection and are lost. In TestResumeWhilePublishing (a publisher
//     sending 300 QoS 1 messages throughout, -race), about one resumption
//     in four loses messages, usually 1 or 2, up to 20 seen, plain mochi
//     included; the test reports them, and fails on them with
//     MQTTAUTH_KNOWN_BUGS=1.
//   - PUBREL packets (QoS 2 messages the client has acknowledged with
//     PUBREC) are resent in mochi's order, after or among the PUBLISH
//     packets [MQTT-4.6.0-3].
//   - Queued messages that were never sent are resent with DUP=1 too
//     (clients.go:311).
//   - The resend ignores the client's Receive Maximum [MQTT-3.3.4-9]. The
//     messages queued beyond it lose their message expiry (Expiry -1,
//     server.go:1090), and after each acknowledgement mochi writes one of
//     them again, with DUP=0 and in random order, and stops tracking it
//     (server.go:720).
//
// # MQTT 3.1.1 clients
//
//   - A refused 3.1.1 client gets the 3.1.1 CONNACK return code of
//     [auth.ReasonCode.ConnackV311] (0x86 becomes 4, 0x87, 0x8A and 0x8C
//     become 5, 0x88, 0x89, 0x97, 0x9C, 0x9D and 0x9F become 3), or, for a
//     code 3.1.1 has no equivalent of (0x80 to 0x83, 0x95...), no CONNACK:
//     the connection is closed. mochi's own mapping misses most v5 codes
//     and would send them as they are.
//   - MQTT 3.1.1 has no DISCONNECT from the server. mochi writes one to a
//     3.1.1 client when it denies a QoS 1 or 2 publish (and on a session
//     take-over); the hook closes the network connection instead, before
//     anything is written (OnPacketEncode). For a denied publish this is
//     the second choice [MQTT-3.3.5-2] of 3.1.1 allows ("either make a
//     positive acknowledgement ... or close the Network Connection"):
//     acknowledging would tell a publisher its message went through when it
//     did not. A denied QoS 0 publish is dropped and the connection stays.
//     The Will message is published, as for any abnormal close.
//
// # The connection layer
//
// Everything about a connection that does not depend on mochi is the
// connection layer's (package mqttconn), shared with the gateway and any
// other adapter, so the paths cannot drift: the CONNECT's malformed-packet
// checks and its auth.Request, the authentication exchange (read with the
// deadline of the Manager's ExchangeTimeout), the refusing CONNACK per
// protocol version (an MQTT 3.1.1 client gets return code 1 to 5 or no
// CONNACK, never 0), re-authentication (whose rate the Session bounds),
// the Will, admission and shutdown ([Hook.Shutdown], [Hook.Drain]). The
// conformance suite (auth/authtest/conformance) runs against this adapter
// with a real mochi broker.
//
// # The Will
//
// mochi never checks the Will itself. The hook checks it twice: at CONNECT
// (a Will topic the principal may not publish refuses the CONNECT with
// 0x87, return code 5 for 3.1.1) and in OnWill, when mochi is about to
// publish it, with the principal the session has or had when the
// connection ended and the policy in force then. A Will that may no longer
// be published (a policy reload removed the right; the session expired,
// was revoked or failed re-authentication) is dropped and counted in
// [Hook.Stats]. A Will with a Will Delay Interval is judged when the
// connection ends: mochi publishes it later without asking any hook
// (server.go, sendDelayedLWT).
//
// # Peers that have not authenticated
//
// mochi sets no limit on the packet size and no deadline for the first
// packet. The connection layer's defaults ([Config].Limits, an
// mqttconn.Limits, the same for every adapter):
//
//   - Limits.MaxPacketSize (1 MiB) becomes the server's
//     Capabilities.MaximumPacketSize when that is 0: a CONNECT declaring
//     more is refused from its fixed header, without reading or allocating
//     it [MQTT-3.2.2-15].
//   - [Hook.Listener] gives each connection Limits.ConnectTimeout (10 s)
//     to complete the TLS handshake and send its CONNECT; the deadline is
//     cleared when OnConnect runs (the authentication exchange has its own
//     timeout, and mochi then applies the keep alive).
//   - [Hook.Listener] accepts at most Limits.MaxPending (256) connections
//     that have not been judged, and at most Limits.MaxPendingPerSource
//     (an eighth of it, 32) from one source, an IPv4 address or an IPv6
//     /64; beyond either, a new connection is closed at once. With the
//     default packet size this bounds what unauthenticated peers can pin to
//     about 256 MiB, for at most ConnectTimeout, and one address flooding
//     silent connections cannot keep the other sources out. A valid client
//     that arrives while its source's share is full is refused and must
//     retry: the deadline is what frees the slots.
//
// [Hook.Stats] counts the peers closed for each reason (over the pending
// bound, over the source's share, timed out, too large, invalid) and the
// Wills dropped, for logs and metrics. A client that sends a valid CONNECT
// is never counted among the refusals, whatever its authentication result.
// Listeners other than [Hook.Listener] (mochi's own, and [TLSListener],
// kept for existing callers) get the packet size limit only.
//
// A refused client's error, which mochi logs, is a [*RefusedError]:
// "mochi: client refused with Not authorized (0x87): <cause>".
//
// # Secrets
//
// Once the Session has judged them, the password and Authentication Data
// are zeroed in the CONNECT packet that later hooks see and removed from
// the client's properties, so storage hooks (badger, bolt, pebble, redis)
// never persist them; the Authentication Data of AUTH packets is zeroed
// too, since mochi logs a packet whose handling failed.
//
// mochi also logs packets that it refuses before any hook sees them, with
// their credentials. Give mochi's Options.Logger a [ServerLogger]: it keeps
// those records, which are the only trace of why such a client was
// disconnected, and drops the packets.
//
// # Where mochi answers first
//
// After CONNACK, mochi checks an AUTH packet's reason code before calling
// any hook: a code MQTT does not define gets DISCONNECT 0x82 (Protocol
// Error) from mochi, where auth.Session would answer 0x81 (Malformed
// Packet). Before CONNACK the hook reads the exchange itself, so the
// Session's 0x81 applies.
//
// # One authorization hook
//
// mochi allows a client as soon as any hook allows it. [Attach] refuses to
// add the hook next to another hook that provides OnConnectAuthenticate or
// OnACLCheck ([ErrOtherAuthHook]), and the check runs again when the server
// starts (hooks from mochi's Options.Hooks are added by Serve): if one is
// found then, the hook logs an error, refuses every client and closes the
// server. mochi has no accessor for its hooks, so the list is read from the
// unexported Server.hooks field by reflection; should mochi change it, the
// check fails closed. Config.InsecureAllowOtherAuthHooks turns the check off.
//
// # Use
//
//	srv := mqtt.New(&mqtt.Options{})
//	m, _ := auth.NewManager(auth.Config{Authenticator: auth.Chain{x509Authn}, Authorizer: policy})
//	h, err := mochi.Attach(srv, mochi.Config{Manager: m})
//	...
//	_ = srv.AddListener(h.Listener("mtls", ":8883", x509Authn.ServerTLSConfig(&tls.Config{Certificates: serverCerts})))
//	_ = srv.Serve()
//
// The package also holds benchmarks that compare the abac authorizer with
// mochi's own auth ledger, mTLS connects and publish throughput.
package mochi
