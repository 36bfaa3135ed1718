package kubeapi

import (
	"context"
	"net/http"
)

// Permission is one thing a client's identity must be allowed to do.
type Permission struct {
	Verb     string // "create", "get", "list", "watch"
	Group    string // API group: "" for the core group
	Resource string // "tokenreviews", "serviceaccounts", "pods"
	// Namespace limits the question to one namespace; empty asks about
	// all namespaces (what a ClusterRole grants).
	Namespace string
}

// String returns "create tokenreviews.authentication.k8s.io" or
// "get serviceaccounts", with " in NAMESPACE" when it is set.
func (p Permission) String() string {
	s := p.Verb + " " + p.Resource
	if p.Group != "" {
		s += "." + p.Group
	}
	if p.Namespace != "" {
		s += " in " + p.Namespace
	}
	return s
}

// selfSubjectAccessReview is the SelfSubjectAccessReview of
// authorization.k8s.io/v1.
type selfSubjectAccessReview struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Spec       struct {
		ResourceAttributes struct {
			Namespace string `json:"namespace,omitempty"`
			Verb      string `json:"verb"`
			Group     string `json:"group"`
			Resource  string `json:"resource"`
		} `json:"resourceAttributes"`
	} `json:"spec"`
	Status struct {
		Allowed bool   `json:"allowed"`
		Reason  string `json:"reason"`
	} `json:"status"`
}

// OpAccessReview names the SelfSubjectAccessReview call in errors.
const OpAccessReview = "create selfsubjectaccessreviews"

// CanI asks, with a SelfSubjectAccessReview, whether the client's
// identity may do p.
func (c *Client) CanI(ctx context.Context, p Permission) (bool, error) {
	in := selfSubjectAccessReview{APIVersion: "authorization.k8s.io/v1", Kind: "SelfSubjectAccessReview"}
	ra := &in.Spec.ResourceAttributes
	ra.Namespace, ra.Verb, ra.Group, ra.Resource = p.Namespace, p.Verb, p.Group, p.Resource
	var out selfSubjectAccessReview
	err := c.Do(ctx, Request{Op: OpAccessReview, Method: http.MethodPost, Path: "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", Body: in}, &out)
	if err != nil {
		return false, err
	}
	return out.Status.Allowed, nil
}

// Missing returns the permissions of perms that CanI denies, in order.
func (c *Client) Missing(ctx context.Context, perms []Permission) ([]Permission, error) {
	var missing []Permission
	for _, p := range perms {
		ok, err := c.CanI(ctx, p)
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = append(missing, p)
		}
	}
	return missing, nil
}
