package scramauth

import (
	"crypto/rand"
	"fmt"

	"github.com/xdg-go/scram"
)

// Mechanism is a SCRAM mechanism, named as the MQTT v5 Authentication Method
// that selects it.
type Mechanism string

// The supported mechanisms (RFC 7677 and its SHA-512 sibling).
const (
	SHA256 Mechanism = "SCRAM-SHA-256"
	SHA512 Mechanism = "SCRAM-SHA-512"
)

// Mechanisms lists the supported mechanisms.
var Mechanisms = []Mechanism{SHA256, SHA512}

// Limits on stored credentials.
const (
	// MinIterations is the smallest PBKDF2 iteration count accepted in a
	// credential (RFC 7677 section 4 asks for at least 4096).
	MinIterations = 4096
	// DefaultIterations is the iteration count of NewCredential when none
	// is given, and the count announced for unknown users by default.
	DefaultIterations = 4096
	// SaltLength is the length in bytes of the salts NewCredential draws,
	// and of the fake salts announced for unknown users.
	SaltLength = 16
	// MinSaltLength is the shortest salt accepted in a credential.
	MinSaltLength = 8
)

// hashFunc returns the mechanism's hash, or nil for an unknown mechanism.
func (m Mechanism) hashFunc() scram.HashGeneratorFcn {
	switch m {
	case SHA256:
		return scram.SHA256
	case SHA512:
		return scram.SHA512
	}
	return nil
}

// keySize is the size of the mechanism's StoredKey, ServerKey and proof.
func (m Mechanism) keySize() int {
	switch m {
	case SHA256:
		return 32
	case SHA512:
		return 64
	}
	return 0
}

// Valid reports whether m is a supported mechanism.
func (m Mechanism) Valid() bool { return m.hashFunc() != nil }

// Credential is what a server stores to verify a user with one mechanism
// (RFC 5802 section 3): the salt and iteration count given to the client, and
// the two keys derived from the password. It holds no password and nothing
// from which the password can be computed other than by guessing it through
// PBKDF2.
//
// In a users file, Salt, StoredKey and ServerKey are written in standard
// base64 (encoding/json's encoding of []byte).
type Credential struct {
	Salt       []byte `json:"salt"`
	Iterations int    `json:"iterations"`
	StoredKey  []byte `json:"storedKey"`
	ServerKey  []byte `json:"serverKey"`
	// Attributes are the user's authorization attributes, put on the
	// Principal. They belong to the user, not to one mechanism, so a users
	// file keeps them beside the credentials and a Store fills them in.
	Attributes map[string]string `json:"-"`
}

// Validate checks that c is usable with mech.
func (c Credential) Validate(mech Mechanism) error {
	switch {
	case !mech.Valid():
		return fmt.Errorf("%w: unknown mechanism %q", ErrInvalidCredential, mech)
	case c.Iterations < MinIterations:
		return fmt.Errorf("%w: %d iterations, fewer than %d", ErrInvalidCredential, c.Iterations, MinIterations)
	case len(c.Salt) < MinSaltLength:
		return fmt.Errorf("%w: salt of %d bytes, shorter than %d", ErrInvalidCredential, len(c.Salt), MinSaltLength)
	case len(c.StoredKey) != mech.keySize() || len(c.ServerKey) != mech.keySize():
		return fmt.Errorf("%w: %s keys must be %d bytes", ErrInvalidCredential, mech, mech.keySize())
	}
	return nil
}

// NewCredential derives the credential of password for mech, with a fresh
// salt from crypto/rand and the given PBKDF2 iteration count (zero means
// DefaultIterations; fewer than MinIterations is an error). The password is
// normalized with SASLprep, as SCRAM clients do (RFC 5802 section 5.1). This
// is the only place this package runs PBKDF2: the server never does.
func NewCredential(mech Mechanism, password string, iterations int) (Credential, error) {
	h := mech.hashFunc()
	if h == nil {
		return Credential{}, fmt.Errorf("%w: unknown mechanism %q", ErrInvalidCredential, mech)
	}
	if iterations == 0 {
		iterations = DefaultIterations
	}
	if iterations < MinIterations {
		return Credential{}, fmt.Errorf("%w: %d iterations, fewer than %d", ErrInvalidCredential, iterations, MinIterations)
	}
	if password == "" {
		return Credential{}, fmt.Errorf("%w: empty password", ErrInvalidCredential)
	}
	salt := make([]byte, SaltLength)
	if _, err := rand.Read(salt); err != nil {
		return Credential{}, fmt.Errorf("scramauth: salt: %w", err)
	}
	// The library's client derives the keys; its error for a password that
	// SASLprep rejects does not quote the password (xdg-go/scram v1.3.0).
	client, err := h.NewClient("", password, "")
	if err != nil {
		return Credential{}, fmt.Errorf("%w: %w", ErrInvalidCredential, err)
	}
	sc, err := client.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: iterations})
	if err != nil {
		return Credential{}, fmt.Errorf("%w: %w", ErrInvalidCredential, err)
	}
	return Credential{Salt: salt, Iterations: iterations, StoredKey: sc.StoredKey, ServerKey: sc.ServerKey}, nil
}
