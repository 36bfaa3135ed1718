// Package aioconfig loads, validates and builds the authentication and
// authorization of a broker from Azure IoT Operations (AIO) resources, as
// kubectl prints them or as the Kubernetes API serves them, so that a
// set-up written for the AIO MQTT broker runs here.
//
// # What it reads
//
// One or more files of YAML or JSON documents (`---` between documents):
//
//   - BrokerListener: its ports, each with its own authenticationRef and
//     authorizationRef (AIO's per-port links) and tls. A port without
//     authorizationRef lets every authenticated client do everything, as
//     in AIO: Build logs a WARN per such port, and every [auth.Decision]
//     of a port names its policy (Decision.Policy), so deny records say
//     which policy found no rule.
//   - BrokerAuthentication, in both API shapes: v1beta1 (seed 002: methods
//     Custom, ServiceAccountToken, x509Credentials with settings under
//     custom, serviceAccountToken, x509Credentials) and v1 (customSettings,
//     serviceAccountTokenSettings, x509Settings). The whole resource or its
//     spec alone.
//   - BrokerAuthorization: the whole resource, its spec, its
//     authorizationPolicies mapping, or the bare rules array the Azure
//     portal takes.
//   - MqttAuthSettings (apiVersion mqttauth.dev/v1alpha1), this library's
//     own kind for what AIO has no resource for: session settings and
//     where ConfigMaps and Secrets are mounted.
//
// Where AIO names a ConfigMap or a Secret (trustedClientCaCert, caCert,
// caCertConfigMap, secretName, secretRef), the name resolves the way a pod
// sees it mounted: a directory per name under the ConfigMap or Secret
// directory (MqttAuthSettings configMapDir, secretDir; the first file's
// directory by default), a file per key. A value that is no such directory
// is a file path, relative to the first file. Certificates of a
// kubernetes.io/tls Secret are its tls.crt and tls.key keys.
//
// The library's own extensions sit beside AIO's fields and never change
// their meaning: the SCRAM method (scramSettings), the JWT method
// (jwtSettings: any OpenID Connect issuer, package jwtauth), SAT
// apiServer, mode, jwksFile and the rest, customSettings caCertFile,
// timeout and auth.x509.certFile/keyFile, x509Settings crls and revocation
// (OCSP and CRL distribution points, package revocation), on a port
// address, authorizationFile (a watched policy file) and
// tls.manual.certFile/keyFile, and MqttAuthSettings throttle and admin;
// MqttAuthSettings upstream.protocol ("5", "3.1.1" or "auto") is the
// example gateway's broker leg (gateway.Config.UpstreamProtocol), and
// upstream.coordination (off unless present) its takeover coordination
// with the other gateways through a 3.1.1 broker
// (gateway.Config.Coordination).
//
// # Observability
//
// MqttAuthSettings admin configures the admin listener ([Broker.Admin]:
// address, 127.0.0.1:9090 by default, "" or "off" for none; pprof) and the
// audit log (level, denyLevel, sampleAllows: [Broker.AuthConfig] fills
// auth.Config.Audit). [Options].Observer is given to every source Build
// makes (truststores, policy watchers, SCRAM users files, custom servers,
// service account tokens, JWT key sets) and to the Manager
// ([Broker.AuthConfig] fills auth.Config.Observer); each port's methods
// report under their own names (the Broker is an auth.MethodsObserver).
// [Broker.ReadyChecks] are the readiness checks of the loaded sources for
// the admin handler's /readyz; [Broker.Throttle], [Broker.X509] and
// [Broker.Revocation] give the components whose own counts a program
// exports (throttle Len, x509auth CachedChains, revocation Stats).
//
// # Brute-force defence
//
// [Broker.Authenticate] counts failed authentications per client address
// and per identity (package throttle) for all ports together, in front of
// every port's chain, and refuses a CONNECT over the limit with CONNACK
// 0x9F before any method is asked. It is on by default with throttle's
// defaults (10 failures in a row, then one per 6 s, per address and per
// identity); MqttAuthSettings throttle changes the limits, turns one
// counter off (disableAddress, disableIdentity) or the whole defence
// (disabled: true). One set of counters for all ports, because a guesser
// can try every port.
//
// # Errors
//
// Every error is an [*Error] that names the file, the document, the
// resource, the field and the value, wraps one of the sentinels
// ([ErrUnknownField], [ErrMissing], ...), and suggests the fix for known
// near-misses: a v1beta1 field in a v1 resource, a method name in the wrong
// case, the layout of the old example configuration.
//
// # One Manager, a chain and a policy per port
//
// [Build] makes one [Port] per listener port with its chain, policy and
// TLS. The [Broker] it returns is the Authenticator and the Authorizer of a
// single auth.Manager for all ports: it hands a request to the chain of the
// port it arrived on (auth.Request.Listener, which the adapter fills with
// the listener's name, Port.Name) and an authorization to the policy of the
// port the principal connected through (auth.Principal.Listener, which the
// Session sets from the request). One Manager rather than one per port,
// because a broker adapter hooks a whole server, and one registry of live
// sessions is what the re-checks walk; the dispatch costs one map lookup.
//
// # Reloads
//
// Every reloadable source the build makes (the truststore and CRLs of an
// X509 method, its revocation checker, which signals each certificate it
// finds newly revoked, a SCRAM users file, a port's authorizationFile, a
// ServiceAccountToken method's list+watch of the ServiceAccounts and Pods
// its clients come from unless its settings say watch: false) is
// an auth.Watch in [Broker.AuthConfig]: the Manager subscribes to it when it
// is built and re-checks the live sessions of the ports that use the
// source, through the one path of auth.Notifier. No change can reach a
// Manager that does not exist yet.
//
// # Readiness
//
// Some sources depend on the world outside the configuration: a
// ServiceAccountToken method needs RBAC permissions for the broker's
// identity. [Broker.CheckReady], called before the listeners open, runs
// each one's start-up check, which logs one line saying what is missing
// and the ClusterRole rules to add; [Broker.ReadyChecks] gives each as a
// named check for a readiness probe. A source that is not ready does not
// stop the broker: its method answers Unavailable (the chain goes on to
// the next method) until the permission is granted, and the probe keeps
// the broker out of service meanwhile.
//
// # Use
//
//	cfg, err := aioconfig.Load("broker.yaml")
//	b, err := aioconfig.Build(ctx, cfg, aioconfig.Options{Logger: log})
//	defer b.Close()
//	_ = b.CheckReady(ctx) // logged with what to fix; see ReadyChecks
//	m, err := auth.NewManager(b.AuthConfig())
//	defer m.Close()
//	for _, p := range b.Ports {
//		// listen on p.Address with p.TLS (nil: plain TCP), naming the
//		// listener p.Name so that requests carry it
//	}
//
// # The Kubernetes API as the source
//
// [NewCluster] reads the same resources from the API server instead of
// files: the BrokerListener, BrokerAuthentication and BrokerAuthorization
// resources of one namespace (group mqttbroker.iotoperations.azure.com,
// read in v1 or v1beta1; either shape is accepted, since a
// CustomResourceDefinition without a conversion webhook serves the stored
// object unchanged), and, by name, the ConfigMaps and Secrets they
// reference, which it holds in memory: nothing is written to disk. Each
// configuration it assembles carries a snapshot of them; an X509 method's
// truststore (truststore.NewMemory) and a SCRAM method's users
// (scramauth.MemoryStore) read it and are updated in place, the other data
// (server certificates, a custom server's CA and client certificate,
// attribute Secrets, a JWT issuer's CA) is read when what names it is
// built. Optional files (Files) add an MqttAuthSettings document.
// [Cluster.Build] builds the Broker and starts the list+watch loops
// (shared with satauth: resumed after the server ends a watch, after 410
// Gone and after API server restarts).
//
// # Live changes: one reload path
//
// Every change goes through [Broker.Apply]: the new configuration is
// validated and built beside the running one, and swapped in whole. What
// did not change keeps its sources and caches (a BrokerAuthentication
// whose methods and read-once data are the same, a policy source of the
// same key); a changed BrokerAuthorization is swapped in place and its
// watch re-checks Connect on its ports; a new CA or SCRAM user list is a
// reload of the in-memory source; a port added, removed or changed is
// told to the program ([Broker.Notify], [Broker.CurrentPorts]), which
// opens or shuts down its listener (the example programs do, package
// examples/internal/liveports: a removed port's MQTT 5 clients get
// DISCONNECT 0x8B through the connection layer's
// mqttconn.Server.ShutdownListener); [Broker.TLS] serves a port's TLS in
// force at each handshake. Then the configuration watch re-checks every
// live session with one idempotent rule: its port still exists (else
// 0x8B), still offers the method that authenticated it (else 0x8C, 0x87
// for X.509, which names no MQTT method), that method's sources still
// take it, a client certificate is still trusted by the port's X509
// method, and the port's policy allows Connect (else 0x87). A change
// that touches none of a session's port, method or policy never
// disconnects it, as a user expects. AIO disconnects every client on a
// policy change, and its documentation does not say what a change of a
// BrokerListener or BrokerAuthentication does to connected clients
// (undocumented: this rule is our decision); kicking everyone on any
// change would turn each kubectl apply into a reconnect storm, so this
// does not copy it. Credentials are never kept, so custom and JWT
// sessions are not re-verified: their expiry and re-authentication,
// judged by the new chain, bound them. The re-check after a change of
// the sources Apply built (a truststore reload of a rebuilt X509 method,
// say) runs the same rule over every live session: correct, and more
// work than the per-source watches of the sources built at start.
//
// An invalid resource keeps the last good configuration, is logged at
// Error with its kind, name and field, and is recorded as a Warning
// Event (reason InvalidConfiguration) on it. Only MqttAuthSettings (the
// admin listener, session settings, limits and throttle) needs a
// restart: Apply reports it in Changes.RestartRequired; from the
// Kubernetes source it is read from files once and never changes. The
// broker's identity needs [ClusterPermissions] in the namespace, checked
// by [Broker.CheckReady] and the readiness check;
// deploy/kubernetes/rbac.yaml is that Role.
//
//	k, err := aioconfig.NewCluster(ctx, aioconfig.ClusterConfig{Namespace: "mqttauth"}) // in-cluster service account
//	defer k.Close()
//	b, err := k.Build(ctx, aioconfig.Options{Logger: log})
//	defer b.Close()
//	m, err := auth.NewManager(b.AuthConfig())
//
// # Room for more
//
// Settings of one port (limits on packet size, handshake and CONNECT
// deadlines, unauthenticated connections) go on [PortSpec] beside address;
// settings of one method go in its settings struct (x509Settings
// requireClientAuthEku, customSettings circuitBreaker); settings of the
// whole process (an admin listener for metrics and health, brute-force
// protection) go in [Settings], the MqttAuthSettings spec.
package aioconfig
