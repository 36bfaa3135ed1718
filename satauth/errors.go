package satauth

import (
	"errors"
	"fmt"
	"net/http"
)

// Errors, for errors.Is. The ones that judge the token make Fail results
// (reason code 0x87); ErrUnavailable, ErrBrokerUnauthorized and
// ErrBrokerForbidden make Unavailable results.
var (
	// ErrMalformed means the token is not a compact JWS JWT.
	ErrMalformed = errors.New("satauth: malformed token")
	// ErrTooLarge means the token is longer than Config.MaxTokenSize.
	ErrTooLarge = errors.New("satauth: token too large")
	// ErrAlgorithm means the token is signed with an algorithm outside
	// the allow-list (including "none" and every HMAC algorithm).
	ErrAlgorithm = errors.New("satauth: signature algorithm not allowed")
	// ErrSignature means the signature does not verify with the cluster's
	// keys, or the key that signed it is unknown.
	ErrSignature = errors.New("satauth: invalid signature")
	// ErrIssuer means the token's iss claim is not the configured issuer.
	ErrIssuer = errors.New("satauth: wrong issuer")
	// ErrAudience means none of the token's audiences is configured.
	ErrAudience = errors.New("satauth: wrong audience")
	// ErrExpired means the token's exp has passed.
	ErrExpired = errors.New("satauth: token expired")
	// ErrNotYetValid means the token's nbf (or iat) is in the future.
	ErrNotYetValid = errors.New("satauth: token not yet valid")
	// ErrNotServiceAccount means the token is valid but does not name a
	// service account (a user's token, a node's token), or its Kubernetes
	// claims do not agree with its subject.
	ErrNotServiceAccount = errors.New("satauth: not a service account token")
	// ErrNotAuthenticated means the TokenReview API said the token is not
	// authenticated: forged, expired, revoked, for another audience, or its
	// service account or pod was deleted.
	ErrNotAuthenticated = errors.New("satauth: token not authenticated")
	// ErrServiceAccountNotFound means the token's service account does not
	// exist (any more), or exists with another UID (deleted and re-created).
	ErrServiceAccountNotFound = errors.New("satauth: service account not found")
	// ErrIdentityChanged means a re-authentication presented a token of
	// another service account than the connection's.
	ErrIdentityChanged = errors.New("satauth: re-authentication for another service account")

	// ErrUnavailable means the Kubernetes API could not be asked: a
	// connection error, a timeout, a 5xx or 429 answer.
	ErrUnavailable = errors.New("satauth: Kubernetes API unavailable")
	// ErrBrokerUnauthorized means the Kubernetes API refused the broker's
	// own token (401): its token file is missing, stale or for another
	// cluster. It is the broker's fault, not the client's.
	ErrBrokerUnauthorized = errors.New("satauth: the Kubernetes API refused the broker's own credentials (401)")
	// ErrBrokerForbidden means the broker's identity lacks RBAC permission
	// (403): create tokenreviews (ClusterRole system:auth-delegator) or get
	// serviceaccounts.
	ErrBrokerForbidden = errors.New("satauth: the broker's identity is not allowed by RBAC (403)")
)

// APIError is an unexpected answer of the Kubernetes API. It unwraps to
// ErrBrokerUnauthorized (401), ErrBrokerForbidden (403) or ErrUnavailable
// (anything else), so every APIError makes an Unavailable result.
type APIError struct {
	// Op names the call: "create tokenreviews", "get serviceaccounts",
	// "get openid-configuration", "get jwks".
	Op string
	// StatusCode is the HTTP status.
	StatusCode int
	// Message is the Status message of the answer, when it had one.
	Message string
}

// Error describes the answer and, for 401 and 403, what to fix.
func (e *APIError) Error() string {
	s := fmt.Sprintf("satauth: Kubernetes API %s: %d %s", e.Op, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		s += ": " + e.Message
	}
	switch e.StatusCode {
	case http.StatusUnauthorized:
		s += " (the broker's own token was refused: check Config.TokenFile and that it is a current token of this cluster)"
	case http.StatusForbidden:
		s += " (the broker's identity lacks RBAC: " + rbacHint(e.Op) + ")"
	}
	return s
}

// Unwrap returns the sentinel the status stands for.
func (e *APIError) Unwrap() error {
	switch e.StatusCode {
	case http.StatusUnauthorized:
		return ErrBrokerUnauthorized
	case http.StatusForbidden:
		return ErrBrokerForbidden
	default:
		return ErrUnavailable
	}
}

func rbacHint(op string) string {
	switch op {
	case opTokenReview:
		return "bind the ClusterRole system:auth-delegator (create tokenreviews.authentication.k8s.io) to it"
	case opGetServiceAccount:
		return "grant get on serviceaccounts (core API group) in the clients' namespaces"
	case "list serviceaccounts", "watch serviceaccounts", "list pods", "watch pods":
		return `grant list and watch on serviceaccounts and pods (core API group), e.g. the ClusterRole rules {apiGroups: [""], resources: ["serviceaccounts", "pods"], verbs: ["list", "watch"]}, or set Config.DisableWatch`
	case opAccessReview:
		return "bind the ClusterRole system:basic-user (create selfsubjectaccessreviews) to it"
	default:
		return "bind the ClusterRole system:service-account-issuer-discovery to it"
	}
}

const (
	opTokenReview       = "create tokenreviews"
	opGetServiceAccount = "get serviceaccounts"
	opDiscovery         = "get openid-configuration"
	opJWKS              = "get jwks"
	// The follower's lists (kubewatch.go builds "list " + resource).
	opListServiceAccounts = "list serviceaccounts"
	opListPods            = "list pods"
)

// ErrPodDeleted means the pod a token is bound to was deleted (or replaced
// by another pod of the same name) while its client was connected; the
// watch ([Authenticator.Watch]) disconnects such clients.
var ErrPodDeleted = errors.New("satauth: the token's pod was deleted")
