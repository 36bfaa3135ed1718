package x509auth

import (
	"log/slog"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/truststore"
)

// Watch returns the watch that re-checks the live sessions of a Manager
// with [Authenticator.Check] each time store publishes a new set (a CA
// removed, a CRL that revokes a serial). Give it to the Manager in
// auth.Config.Watches: the Manager subscribes itself, so no change can
// arrive before it exists.
func (a *Authenticator) Watch(store *truststore.Store) auth.Watch {
	return auth.Watch{Name: "truststore", Source: store, Check: a.Check, Timeout: a.timeout}
}

// RecheckOnChange re-checks every live session of m with [Authenticator.Check]
// each time store publishes a new set (a CA removed, a CRL that revokes a
// serial), so that the clients that lost trust are disconnected (DISCONNECT
// Config.RevokedCode, 0x87 by default) without waiting for them to
// reconnect. Failed reloads change nothing and start no re-check. Changes
// that arrive during a re-check are coalesced into one more re-check.
//
// It returns a function that stops listening, cancels a re-check in
// progress and waits for it to end.
//
// Deprecated: Use [Authenticator.Watch] in auth.Config.Watches (or, for a
// Manager that exists already, auth.Manager.Watch(a.Watch(store))): the
// same re-check through the Manager's one change path. See API.md.
func (a *Authenticator) RecheckOnChange(m *auth.Manager, store *truststore.Store) (stop func()) {
	stop, err := m.Watch(a.Watch(store))
	if err != nil { // a nil store
		a.log.Error("x509auth: no re-check on truststore changes", slog.String("err", err.Error()))
		return func() {}
	}
	return stop
}
