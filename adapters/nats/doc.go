// Package nats connects mqttauth to nats-server
// (github.com/nats-io/nats-server/v2 v2.15): an [Authentication] for
// server.Options.CustomClientAuthentication that authenticates every client
// connection, MQTT (nats-server's MQTT 3.1.1 listener) and native NATS
// alike, through an [auth.Session], and gives it the NATS permissions that
// the abac BrokerAuthorization policy grants its principal.
//
// # Model
//
// nats-server calls Check on the client's goroutine once it has read the
// CONNECT. Check builds an mqttconn.Connect from what nats-server parsed,
// validates it and runs [auth.Session.Connect] on its auth.Request:
//
//   - MQTT clients: the MQTT client identifier (nats-server assigns one
//     when the client sent none), user name and password, the TLS
//     connection state of the MQTT listener (x509auth verifies the chain),
//     the remote address, listener "mqtt", protocol version 4.
//   - Native NATS clients: the connection name (nats.Name) as the client
//     identifier, user name and password or, when the client sends a token
//     instead, the token as the password; listener "nats" ("websocket" over
//     WebSocket).
//
// So X.509, a user name and password against a custom authentication
// server (customauth), and Kubernetes service account tokens or OIDC JWTs
// sent as the password (satauth's user name fallback, jwtauth.FromPassword)
// all work. SCRAM cannot: neither MQTT 3.1.1 nor NATS has an AUTH packet
// or an Authentication Method, so scramauth in the chain is never relevant
// (the client is refused as no method is relevant, CONNACK 5 Not
// authorized), and an authenticator that asks for a second step is
// refused by the Session ("an authenticator asked to continue but the
// client named no authentication method").
//
// nats-server answers every refusal itself: CONNACK return code 5 (Not
// authorized) to an MQTT client, "Authorization Violation" to a native
// one, whatever the Session's reason code (0x86, 0x87, 0x88...), which
// reaches the audit log and the Observer. [Listeners] names the listener
// of each kind of connection (Config.Listeners), so that an
// aioconfig.Broker (whose Grants method serves as Config.Policy) selects
// its port's chain and policy; examples/nats does this.
//
// The MQTT client identifier is not part of nats-server's
// ClientAuthentication interface; it is read, by reflection and never
// written, from the unexported field where nats-server keeps it (set
// before authentication, on the same goroutine). Should a later version
// move it, every client is refused with [ErrUnsupportedServer] rather
// than given a wrong identifier. server.Connz also shows it, but copies
// the whole client table on each call.
//
// When the Session passes (and the policy allows Connect, which the
// Session checks), Check registers the user with nats-server:
// Permissions from [Permissions], the principal's user name (reported in
// nats-server's monitoring and events), Config.Account, and the
// credential's expiry as ConnectionDeadline, at which nats-server closes
// the connection (the Session's own expiry timer does too).
//
// # Permissions
//
// NATS decides publish and subscribe itself, from subject lists fixed
// when the client connects: there is no per-message question to ask the
// Session. The principal's grants ([abac.Policy.Grants]: its Publish and
// Subscribe topic filters, variables substituted) become the allow lists,
// each filter written as nats-server writes MQTT topics ([Subject]): '/'
// separates tokens, '+' is '*', '#' is '>', a '.' inside a level is "//"
// and an empty level is the token "/". A filter ending in "/#" also allows
// its parent ("a/#" matches "a" [MQTT-4.7.1-2]; nats-server subscribes an
// MQTT client to both). A principal without Subscribe grants gets a deny
// of ">" (an empty allow list means everything to nats-server).
//
// Two things MQTT filters say cannot be said with NATS subjects without
// allowing more, and [New] (through [CheckPolicy]) refuses a policy that
// holds them, naming the rule:
//
//   - A filter beginning with a wildcard ("#", "+/x"): in MQTT it does not
//     match topics beginning with '$' [MQTT-4.7.2-1]; NATS '*' and '>'
//     do, so "#" would open $SYS and every other $ topic.
//   - A Subscribe filter ending in '+' ("a/+"): nats-server matches a
//     requested subscription against the allow list token by token, so a
//     user allowed "a.*" may subscribe "a.>", every topic below a/.
//   - A topic level that is exactly "*" or ">" (a literal in MQTT, a
//     wildcard in NATS), and white space or DEL, which nats-server refuses
//     in MQTT topics.
//
// A variable whose value would make such a level ("*", ">", white space)
// leaves its filter out of the principal's permissions: it allows nothing
// rather than more. nats-server allows a subscription that several grants
// cover together ("a/#" when "a" and "a/+/#" are granted), where abac
// asks for one filter that covers it: the subjects delivered are still
// only those granted.
//
// nats-server's own choices on a denied action: an MQTT PUBLISH (QoS 1)
// that the permissions deny is acknowledged and dropped (MQTT 3.1.1 allows
// either acknowledging or closing [MQTT-3.3.5-2]); a denied SUBSCRIBE gets
// the SUBACK failure code 0x80; a native client gets a permissions
// violation error and keeps its connection.
//
// # The Will
//
// nats-server keeps an MQTT client's Will out of reach until after
// authentication, so it cannot be judged at CONNECT as mqttconn does for
// the other paths (a forbidden Will topic refusing the CONNECT). It is
// judged when it is published: nats-server publishes it through the
// client's permissions, and a Will on a topic the client was not granted
// is dropped. A client disconnected by a policy re-check still holds the
// permissions it connected with at that moment, so its Will is judged
// against those.
//
// # Re-checks
//
// A connection whose session loses access ([auth.Manager.Recheck]: a
// truststore or CRL change with x509auth, a SAT watch, a policy change) is
// closed with Server.DisconnectClientByID; MQTT 3.1.1 has no DISCONNECT
// from the server. Because NATS fixes permissions at connect, a policy
// change must re-check them, not only Connect:
// [Authentication.CheckPermissions] disconnects exactly the sessions whose
// permissions are no longer all granted, and those clients get the current
// policy's permissions when they reconnect. Sessions whose connection
// nats-server closed are ended by a periodic sweep (nats-server has no
// hook for a closed client; Config.SweepInterval).
//
// # Auth callout
//
// [Callout] is the same mapping beside the servers rather than inside
// one: an auth callout service (nats-server 2.10 and later, the stock
// binary included) that answers the servers' authorization requests on
// "$SYS.REQ.USER.AUTH" in a queue group, so that every node of a cluster
// delegates to the same replicated service. Each request (the MQTT client
// identifier from ClientInformation.MQTT, the user name, password or
// token, the client's certificate chain, the client's address) runs an
// auth.Session through mqttconn.Connect; a pass is answered with a user
// JWT placed in CalloutConfig.Account, carrying the same permissions as
// above (an empty publish list becomes a publish deny of ">": in a user
// JWT an empty allow list means everything) and the credential's expiry,
// signed with the issuer account's nkey named in the servers'
// auth_callout block; a refusal with an error. The service needs:
//
//	accounts {
//	  AUTH { users: [ { user: auth, password: ... } ] }   # CalloutConfig.Conn
//	  APP  { jetstream: enabled }                          # CalloutConfig.Account
//	  SYS  { users: [ { user: sys, password: ... } ] }     # CalloutConfig.System
//	}
//	system_account: SYS
//	authorization { auth_callout { issuer: <account public nkey>, auth_users: [ auth, sys ], account: AUTH } }
//
// With a TLS listener that verifies client certificates ("verify: true"
// and the client CA), the server forwards the verified chain and x509auth
// checks it again against its own trust, CRLs and revocation included
// (the stock server has no CRLs). A session that loses access is closed
// with the system account's kick request ("$SYS.REQ.SERVER.<id>.KICK") on
// the server that holds the connection, and the servers' disconnect
// events ("$SYS.ACCOUNT.*.DISCONNECT") end the sessions of closed
// connections. Each replica keeps the sessions it authenticated: a
// replica that stops no longer re-checks its clients' connections (their
// expiry, in the user JWT, still applies), and a connection a server
// refuses after the service's answer is ended only by its expiry or by
// the service's Close.
//
// # Observability
//
// The Manager's Observer and audit log see every authentication, refusal,
// re-check and disconnect, as with the other adapters. Publish and
// subscribe decisions are nats-server's and are not reported.
//
// # Use
//
//	policy, _ := abac.NewWatcher(abac.WatchConfig{Path: "policy.yaml"})
//	m, _ := auth.NewManager(auth.Config{Authenticator: auth.Chain{x509Authn}, Authorizer: policy})
//	a, err := nats.New(nats.Config{Manager: m, Policy: policy})
//	...
//	opts := &server.Options{JetStream: true, StoreDir: dir,
//		MQTT: server.MQTTOpts{Port: 8883, TLSConfig: x509Authn.ServerTLSConfig(serverTLS)}}
//	srv, err := nats.NewServer(opts, a)
//	...
//	stop, _ := m.Watch(auth.Watch{Name: "abac policy", Source: policy, Check: a.CheckPermissions})
//	srv.Start()
package nats
