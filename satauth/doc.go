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
// ServiceAccount GET and cached for Config.AttributeTTL. The lookup also
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
// # What the broker's identity needs
//
// For ModeTokenReview, the ClusterRole system:auth-delegator (create
// tokenreviews); for attributes, get on serviceaccounts in the clients'
// namespaces; for ModeLocal without a JWKS file, the ClusterRole
// system:service-account-issuer-discovery (bound to every service account
// by default).
//
//	kubectl create clusterrolebinding mqtt-broker-auth-delegator \
//	  --clusterrole=system:auth-delegator --serviceaccount=mqtt:broker
//	kubectl create clusterrole sa-reader --verb=get --resource=serviceaccounts
//	kubectl create clusterrolebinding mqtt-broker-sa-reader \
//	  --clusterrole=sa-reader --serviceaccount=mqtt:broker
//
// # Use
//
//	a, err := satauth.New(ctx, satauth.Config{Audiences: []string{"aio-mq"}})
//	if err != nil { ... }
//	defer a.Close()
//	m, err := auth.NewManager(auth.Config{Authenticator: auth.Chain{a}, ...})
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
