package scramauth

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/xdg-go/stringprep"
	"sigs.k8s.io/yaml"

	"github.com/mqttauth/mqttauth/auth"
)

// Store looks up the stored credential of a user for a mechanism. It reports
// false when the user does not exist or has no credential for mech.
//
// Implementations must be safe for concurrent use and fast: Lookup runs on
// every connection attempt, in the broker's read loop. A Store holds salted,
// derived keys only (see [Credential]); never passwords.
type Store interface {
	Lookup(mech Mechanism, username string) (Credential, bool)
}

// StoreFunc adapts a function to a [Store].
type StoreFunc func(mech Mechanism, username string) (Credential, bool)

// Lookup calls f(mech, username).
func (f StoreFunc) Lookup(mech Mechanism, username string) (Credential, bool) {
	return f(mech, username)
}

// User is one user of a users file: a name, a credential per mechanism, and
// authorization attributes.
type User struct {
	// Name is the SCRAM user name, in the form SASLprep leaves unchanged
	// (clients SASLprep the name before sending it).
	Name string `json:"name"`
	// Credentials holds one credential per mechanism the user may use.
	Credentials map[Mechanism]Credential `json:"credentials"`
	// Attributes are put on the Principal for authorization (abac).
	Attributes map[string]string `json:"attributes,omitempty"`
}

// File is the content of a users file, JSON or YAML:
//
//	{"users": [{
//	  "name": "alice",
//	  "credentials": {
//	    "SCRAM-SHA-256": {"salt": "...", "iterations": 4096, "storedKey": "...", "serverKey": "..."}
//	  },
//	  "attributes": {"group": "thermostats"}
//	}]}
//
// Write one with the scramuser command of the examples module, or with
// [NewCredential] and [File.Marshal].
type File struct {
	Users []User `json:"users"`
}

// ParseFile parses and validates a users file, JSON or YAML. Unknown fields
// are errors (a typo must not drop a user silently), and so is an empty
// document: a file caught half-written must not remove every user.
func ParseFile(data []byte) (*File, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: empty users file", ErrInvalidCredential)
	}
	var f File
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("%w: users file: %w", ErrInvalidCredential, err)
	}
	if f.Users == nil {
		// "{}" or a document without the users key: say so rather than
		// serve an empty set by accident. "users: []" is an explicit empty set.
		var probe map[string]json.RawMessage
		if err := yaml.Unmarshal(data, &probe); err != nil || probe["users"] == nil {
			return nil, fmt.Errorf("%w: users file has no users key", ErrInvalidCredential)
		}
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// Validate checks every user: a name that is valid UTF-8, non-empty, unique
// and unchanged by SASLprep; at least one credential; every credential valid
// for its mechanism; attribute names non-empty.
func (f *File) Validate() error {
	seen := make(map[string]bool, len(f.Users))
	for i, u := range f.Users {
		if err := validateName(u.Name); err != nil {
			return fmt.Errorf("users[%d]: %w", i, err)
		}
		if seen[u.Name] {
			return fmt.Errorf("%w: users[%d]: duplicate user %q", ErrInvalidCredential, i, u.Name)
		}
		seen[u.Name] = true
		if len(u.Credentials) == 0 {
			return fmt.Errorf("%w: users[%d] (%q): no credentials", ErrInvalidCredential, i, u.Name)
		}
		for _, m := range slices.Sorted(maps.Keys(u.Credentials)) {
			if err := u.Credentials[m].Validate(m); err != nil {
				return fmt.Errorf("users[%d] (%q): %s: %w", i, u.Name, m, err)
			}
		}
		for k := range u.Attributes {
			if k == "" {
				return fmt.Errorf("%w: users[%d] (%q): empty attribute name", ErrInvalidCredential, i, u.Name)
			}
		}
	}
	return nil
}

func validateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty user name", ErrInvalidCredential)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: user name is not valid UTF-8", ErrInvalidCredential)
	}
	prepped, err := stringprep.SASLprep.Prepare(name)
	if err != nil {
		return fmt.Errorf("%w: user name %q: SASLprep: %w", ErrInvalidCredential, name, err)
	}
	if prepped != name {
		return fmt.Errorf("%w: user name %q is %q after SASLprep; store that form", ErrInvalidCredential, name, prepped)
	}
	return nil
}

// Put adds u, or replaces the user of the same name (a password rotation).
func (f *File) Put(u User) {
	for i := range f.Users {
		if f.Users[i].Name == u.Name {
			f.Users[i] = u
			return
		}
	}
	f.Users = append(f.Users, u)
}

// Remove removes the named user and reports whether it was there.
func (f *File) Remove(name string) bool {
	n := len(f.Users)
	f.Users = slices.DeleteFunc(f.Users, func(u User) bool { return u.Name == name })
	return len(f.Users) != n
}

// Marshal returns the file as indented JSON, users sorted by name.
func (f *File) Marshal() ([]byte, error) {
	out := File{Users: slices.Clone(f.Users)}
	if out.Users == nil {
		out.Users = []User{}
	}
	slices.SortFunc(out.Users, func(a, b User) int { return cmp.Compare(a.Name, b.Name) })
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("scramauth: %w", err)
	}
	return append(b, '\n'), nil
}

// Users is an immutable, indexed set of users: a [Store] that does not
// change. A [FileStore] swaps one for another on reload.
type Users struct {
	byMech map[Mechanism]map[string]Credential
	n      int
}

var _ Store = (*Users)(nil)

// NewUsers validates f and indexes its users.
func NewUsers(f *File) (*Users, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	u := &Users{byMech: make(map[Mechanism]map[string]Credential, len(Mechanisms)), n: len(f.Users)}
	for _, user := range f.Users {
		attrs := maps.Clone(user.Attributes)
		for m, c := range user.Credentials {
			idx := u.byMech[m]
			if idx == nil {
				idx = make(map[string]Credential, len(f.Users))
				u.byMech[m] = idx
			}
			c.Attributes = attrs
			idx[user.Name] = c
		}
	}
	return u, nil
}

// ParseUsers parses a users file (JSON or YAML) into a Users set.
func ParseUsers(data []byte) (*Users, error) {
	f, err := ParseFile(data)
	if err != nil {
		return nil, err
	}
	return NewUsers(f)
}

// Lookup returns the credential of username for mech. The credential and its
// attribute map are shared: callers must not modify them.
func (u *Users) Lookup(mech Mechanism, username string) (Credential, bool) {
	c, ok := u.byMech[mech][username]
	return c, ok
}

// Len returns the number of users.
func (u *Users) Len() int { return u.n }

// CheckStore returns an [auth.CheckFunc] for [auth.Manager.Recheck] that
// disconnects the SCRAM-authenticated sessions whose user no longer has a
// credential for the mechanism it used: run it after a users file change so
// that a removed user loses its live connections. Sessions authenticated by
// other methods are left alone. A changed password does not disconnect:
// the connection proved the password that was valid when it connected, and
// its next re-authentication must prove the new one.
func CheckStore(s Store) auth.CheckFunc {
	return func(_ context.Context, sess *auth.Session) error {
		p := sess.Principal()
		if p == nil {
			return nil
		}
		mech := Mechanism(p.Method())
		if !mech.Valid() {
			return nil
		}
		if _, ok := s.Lookup(mech, p.Username()); !ok {
			return fmt.Errorf("%w: %w: %s user %q was removed", auth.ErrRevoked, errUserRemoved, mech, p.Username())
		}
		return nil
	}
}

var errUserRemoved = errors.New("scramauth: user removed")
