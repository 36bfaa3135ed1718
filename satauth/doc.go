// Package satauth authenticates MQTT clients by Kubernetes service account
// tokens: the Authentication Method K8S-SAT of Azure IoT Operations, whose
// Authentication Data is a bound token that the kubelet projects into the
// client's pod.
//
// # Model
//
// An [Authenticator] is an auth.Authenticator. A CONNECT (or a
// re-authenticating AUTH 0x19) with method K8S-SAT is relevant; anything else
// is NotRelevant. With Config.AllowUsernameFallback, an MQTT 3.1.1 CONNECT
// with no method whose username begins with "K8S-SAT" is relevant too and its
// password is the token. The CONNECT username is never the identity: the
// principal's username is the token's service account,
// "system:serviceaccount:NAMESPACE:NAME".
//
// A token is verified in one of two modes:
//
//   - ModeTokenReview (default) posts it to the TokenReview API with the
//     configured audiences and trusts status.user.username once the API has
//     authenticated it and status.audiences meets Config.Audiences.
//   - ModeLocal verifies it with the cluster's public keys: the API server's
//     OIDC discovery document and JWKS (or Config.JWKSFile), with an
//     allow-list of asymmetric algorithms ("none" and HMAC are refused), and
//     checks iss, aud, exp, nbf, iat and the Kubernetes claims (sub must be
//     system:serviceaccount:NS:NAME and agree with the kubernetes.io claim).
//     Keys are cached; a token with an unknown key id makes one refetch (at
//     most one per Config.KeyRefreshInterval, concurrent ones merged).
//
// The discovery document is fetched from the API server's URL
// (Config.APIServer or the in-cluster address), not from the issuer, because
// the issuer (https://kubernetes.default.svc.cluster.local by default)
// seldom resolves from the broker; the token's iss is checked against
// Config.Issuer, or against the document's issuer when Config.Issuer is empty.
//
// Attributes come from the service account's annotations that begin with
// Config.AnnotationPrefix ("aio-broker-auth/" by default), read with a
// ServiceAccount GET and cached for Config.AttributeTTL (kept current by
// the watch, below). The lookup also
// refuses tokens of deleted service accounts, and of accounts deleted and
// re-created under the same name (another UID).
//
// Verified tokens are cached under their SHA-256 until their exp or
// Config.CacheTTL, whichever is first, in a bounded LRU; concurrent reviews
// of one token are merged into one API call.
//
// # Outcomes
//
//   - Pass: the principal with Method "K8S-SAT", the service account as
//     username, the annotations as attributes and the token's exp as
//     Expiry, which the auth.Session enforces. Re-authentication with a
//     refreshed token moves the expiry.
//   - Fail 0x87: a token that is malformed, too large, signed with a
//     disallowed algorithm, badly signed, expired, not yet valid, for
//     another audience or issuer, not a service account's, not
//     authenticated by the API, of a deleted account, or (during
//     re-authentication) of another service account than the connection's.
//   - Unavailable: the API could not be asked (connection errors, timeouts,
//     429 and 5xx), so a Chain tries the next method at CONNECT and a
//     re-authenticating client gets AUTH 0x18 and stays connected. A 401 or
//     403 from the API is about the broker, not the client: its own token
//     is wrong (401) or its identity lacks RBAC (403). Both are
//     Unavailable, logged at Error level with what to fix, and unwrap to
//     ErrBrokerUnauthorized and ErrBrokerForbidden.
//
// # Following Kubernetes while clients are connected
//
// [Authenticator.Watch] (on unless Config.DisableWatch) is the follower as
// an auth.Watch for auth.Config.Watches: the Manager subscribes to it
// itself and its Close stops it (auth.Manager.Watch adds it to a Manager
// built without it). The follower watches,
// with the API's list+watch (plain HTTP, metadata only, no client-go), the
// ServiceAccounts and Pods of each namespace that a connected client's
// service account is in. The watch of a namespace starts when the first
// session from it authenticates and stops within four sweeps (every 30 s) after
// its last session has ended; the tokens and accounts cached for a
// namespace are dropped when its watch stops, so nothing is cached that
// no watch keeps current. On a change:
//
//   - a deleted service account, or one re-created under its name (another
//     UID), disconnects its sessions with DISCONNECT 0x87 (Not authorized)
//     within about a second, and its tokens are refused on reconnect at
//     once (the token and account caches are updated by the event);
//   - a deleted pod disconnects the sessions whose token is bound to it
//     (the pod is named by the TokenReview's user.extra
//     authentication.kubernetes.io/pod-name and pod-uid, or in ModeLocal by
//     the token's kubernetes.io.pod claim) with 0x87, and its tokens are
//     refused on reconnect (ModeTokenReview asks the API again; ModeLocal
//     remembers the deleted pod's UID);
//   - changed annotations give the account's sessions a new principal
//     with the new attributes through [auth.Session.Update]: publishes are
//     authorized with them from then on (decisions cached for the old
//     principal are not reused), and a session whose new principal may no
//     longer Connect is disconnected with 0x87.
//
// A watch that the API server ends is resumed from its last
// resourceVersion; one that fails (the API server restarts, the network)
// is resumed by listing again after a backoff from 250 ms doubling to
// 30 s, and the list catches what changed meanwhile; 410 Gone lists again
// at once. Memory is bounded by the live sessions (one small binding
// each, dropped at the sweep after the session ends) and the caches'
// sizes; the Manager's Close (or the Authenticator's, or the function
// auth.Manager.Watch returns) ends every goroutine. Tokens bound to Secrets (legacy) are not followed.
//
// # What the broker's identity needs
//
// For ModeTokenReview, the ClusterRole system:auth-delegator (create
// tokenreviews); for attributes, get on serviceaccounts in the clients'
// namespaces; for the watch, list and watch on serviceaccounts and pods;
// for ModeLocal without a JWKS file, the ClusterRole
// system:service-account-issuer-discovery (bound to every service account
// by default).
//
//	kubectl create clusterrolebinding mqtt-broker-auth-delegator \
//	  --clusterrole=system:auth-delegator --serviceaccount=mqtt:broker
//	kubectl create clusterrole mqtt-broker-sat --verb=get,list,watch --resource=serviceaccounts,pods
//	kubectl create clusterrolebinding mqtt-broker-sat \
//	  --clusterrole=mqtt-broker-sat --serviceaccount=mqtt:broker
//
// [Authenticator.CheckReady], called at start-up before the listeners
// open, asks the API (SelfSubjectAccessReview) whether the broker's
// identity has each of these permissions cluster-wide and whether its
// token is accepted, and logs one line: "satauth: ready", or at Error
// level what is missing with the ClusterRole rules to add, e.g.
// {apiGroups: [""], resources: ["serviceaccounts"], verbs: ["list", "watch"]}.
// [Authenticator.Ready] returns its outcome, for a readiness probe.
//
// # Use
//
//	a, err := satauth.New(ctx, satauth.Config{Audiences: []string{"aio-mq"}})
//	if err != nil { ... }
//	defer a.Close()
//	if err := a.CheckReady(ctx); err != nil { ... } // logged with what to fix
//	m, err := auth.NewManager(auth.Config{Authenticator: auth.Chain{a},
//		Watches: []auth.Watch{a.Watch(0)}, ...}) // follows Kubernetes
//	defer m.Close()
//
// In a pod the zero Config but for Audiences uses the in-cluster API server,
// CA and the broker's own token (re-read when the kubelet rotates it).
// Package sattest provides a fake API server for tests.
//
// Legacy secret-based tokens, which never expire, are refused in both modes.
// No Kubernetes client library is used: a small net/http client with
// timeouts, size-limited answers and the configured CA. Tokens are never
// logged; records carry the first 12 hex digits of the token's SHA-256
// under the key "token_sha256".
package satauth
