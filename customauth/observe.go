package customauth

import (
	"time"

	"github.com/mqttauth/mqttauth/auth"
)

// MethodName returns the label of this method in metrics (auth.MethodNamer).
func (a *Authenticator) MethodName() string { return a.method }

// observeWith wires o into the breaker and the coalescing of calls.
func (a *Authenticator) observeWith(o auth.Observer) {
	if o == nil {
		return
	}
	a.obs = o
	a.flights.shared = func() { a.observe(auth.CallCoalesced, false, 0) }
	if a.breaker != nil {
		a.breaker.onChange = func(k auth.ComponentEventKind) { a.observe(k, false, 0) }
	}
}

// observe reports one event of the server's calls.
func (a *Authenticator) observe(k auth.ComponentEventKind, failed bool, d time.Duration) {
	if a.obs != nil {
		a.obs.Component(auth.ComponentEvent{Component: auth.ComponentCustom, Kind: k, Failed: failed, Latency: d})
	}
}

// changed reports a breaker change.
func (b *breaker) changed(k auth.ComponentEventKind) {
	if b.onChange != nil {
		b.onChange(k)
	}
}
