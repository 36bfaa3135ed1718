// Package mochi connects mqttauth to mochi-mqtt (github.com/mochi-mqtt/server/v2
// v2.7.9): a mochi hook that gives every client an [auth.Session], so that
// the broker authenticates with any [auth.Authenticator] (X.509, Kubernetes
// service account tokens, a custom server, multi-step SCRAM-like methods),
// authorizes with any [auth.Authorizer] (abac policies), supports MQTT v5
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
//   - OnACLCheck answers publish, subscribe and delivery checks with the
//     session's current principal; a delivery is checked as a Subscribe of
//     the topic name. When the authorizer is an abac.Source (an
//     *abac.Policy or *abac.Watcher) each session has an abac.Cache, which
//     forgets its decisions on re-authentication and policy reload. The
//     session is found through a sync.Map keyed by *mqtt.Client, whose
//     reads take no lock; a cache hit allocates nothing.
//   - The Session ends connections on its own through the hook (expiry,
//     [auth.Manager.Recheck], a stalled exchange): DISCONNECT goes out
//     through mochi's DisconnectClient, which always writes the reason code
//     byte (paho.golang cannot parse a DISCONNECT without one), then the
//     client is stopped. MQTT 3 clients are closed without a DISCONNECT.
//   - OnDisconnect closes the session; clients that fail between OnConnect
//     and CONNACK, for which mochi calls no OnDisconnect, are swept.
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
//	if _, err := mochi.Attach(srv, mochi.Config{Manager: m}); err != nil { ... }
//	_ = srv.AddListener(mochi.TLSListener("mtls", ":8883", x509Authn, &tls.Config{Certificates: serverCerts}))
//	_ = srv.Serve()
//
// The package also holds benchmarks that compare the abac authorizer with
// mochi's own auth ledger, mTLS connects and publish throughput.
package mochi
