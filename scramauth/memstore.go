package scramauth

import (
	"sync/atomic"

	"github.com/mqttauth/mqttauth/auth"
)

// MemoryStore is a [Store] held in memory and replaced whole, for users
// that come from somewhere other than a file: a Kubernetes Secret read
// through the API (package aioconfig), a database. It is the in-memory
// twin of [FileStore], in the shape of go-spiffe's sources: lookups read an
// immutable snapshot behind an atomic pointer, [MemoryStore.Replace] swaps
// it, and [MemoryStore.Notify] is the auth.Notifier change signal, so that
// an auth.Manager re-checks live sessions with [CheckStore] when users are
// removed:
//
//	s := scramauth.NewMemoryStore(users)
//	watch := auth.Watch{Name: "scram users", Source: s, Check: scramauth.CheckStore(s)}
//	// later, from the source of truth:
//	s.Replace(newUsers)
type MemoryStore struct {
	cur atomic.Pointer[Users]
	sig auth.Signal
}

var (
	_ Store         = (*MemoryStore)(nil)
	_ auth.Notifier = (*MemoryStore)(nil)
)

// NewMemoryStore returns a MemoryStore holding u (no user when nil).
func NewMemoryStore(u *Users) *MemoryStore {
	s := &MemoryStore{}
	if u == nil {
		u = &Users{}
	}
	s.cur.Store(u)
	return s
}

// Lookup returns the credential of username for mech in the users in
// force.
func (s *MemoryStore) Lookup(mech Mechanism, username string) (Credential, bool) {
	return s.cur.Load().Lookup(mech, username)
}

// Current returns the users in force; never nil.
func (s *MemoryStore) Current() *Users { return s.cur.Load() }

// Replace puts u in force (no user when nil) and calls the Notify
// subscribers, in order, before it returns.
func (s *MemoryStore) Replace(u *Users) {
	if u == nil {
		u = &Users{}
	}
	s.cur.Store(u)
	s.sig.Fire()
}

// Notify implements auth.Notifier: fn is called after each Replace.
func (s *MemoryStore) Notify(fn func()) (cancel func()) { return s.sig.Notify(fn) }
