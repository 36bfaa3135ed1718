package satauth

import (
	"time"

	"github.com/mqttauth/mqttauth/auth"
)

// MethodName returns the label of this method in metrics (auth.MethodNamer).
func (a *Authenticator) MethodName() string { return Method }

// observe reports one API call of op that began at start and ended with
// *err: TokenReview calls and JWKS or discovery fetches.
func (c *kubeClient) observe(op string, start time.Time, err *error) {
	if c.obs == nil {
		return
	}
	comp := auth.ComponentJWKS
	switch op {
	case opTokenReview:
		comp = auth.ComponentTokenReview
	case opJWKS, opDiscovery:
	case opListServiceAccounts, opListPods:
		comp = auth.ComponentKubeWatch
	default:
		return
	}
	c.obs.Component(auth.ComponentEvent{Component: comp, Kind: auth.Call, Failed: *err != nil, Latency: time.Since(start)})
}

// observeWatch reports the opening of a watch stream (Failed when it
// could not be opened, or broke with an error), for
// backend_calls_total{component="kubewatch"}: a live watch counts one ok
// per stream (the API server ends each after 5 minutes) and no failure.
func (c *kubeClient) observeWatch(latency time.Duration, failed bool) {
	if c.obs != nil {
		c.obs.Component(auth.ComponentEvent{Component: auth.ComponentKubeWatch, Kind: auth.Call, Failed: failed, Latency: latency})
	}
}

// observeReview reports a TokenReview answer that needed no call of its own.
func (a *Authenticator) observeReview(k auth.ComponentEventKind) {
	if a.kube != nil && a.kube.obs != nil && a.mode == ModeTokenReview {
		a.kube.obs.Component(auth.ComponentEvent{Component: auth.ComponentTokenReview, Kind: k})
	}
}

// observer is auth.Observer, named here so that kube.go needs no import.
type observer = auth.Observer
