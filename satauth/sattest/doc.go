// Package sattest provides a fake Kubernetes API server for testing code
// that uses package satauth, as go-oidc's oidctest does for oidc: it serves
// TokenReview, ServiceAccount reads, OIDC discovery and the JWKS over TLS,
// and signs real service account tokens, so a broker's tests need no
// cluster. It is meant for tests only.
//
//	srv := sattest.NewServer(t, sattest.Options{})
//	srv.AddServiceAccount("default", "sensor", map[string]string{"aio-broker-auth/group": "sensors"})
//	a, err := satauth.New(ctx, srv.Config("aio-mq"))
//	token := srv.Token("default", "sensor", sattest.TokenOptions{Audiences: []string{"aio-mq"}})
//
// The server also injects the failures a broker must survive: Fail (an HTTP
// status for every call), Hang (calls that never answer), Forbid (the
// broker's identity lacks RBAC) and key rotation. Calls counts the requests
// per endpoint.
package sattest
