package x509auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/internal/certid"
)

// RevocationChecker judges the revocation status of a verified chain
// beyond the truststore's CRLs: OCSP, CRL distribution points
// (*revocation.Checker is one). chain is the leaf first, ending at the
// trusted CA. An error wrapping auth.ErrUnavailable means no answer could
// be had: Authenticate returns Unavailable (CONNACK 0x88 when no other
// method decides) and a re-check keeps the session; any other error
// refuses the chain (0x87, or Config.RevokedCode for a live session).
//
// Check is called by Authenticate and by the re-check, on every call, also
// for a chain found in the verified-chain cache, so that a cached chain is
// judged on the current status. It is not called during the TLS handshake:
// a lookup must not hold one. It must be safe for concurrent use and
// should answer from a cache.
type RevocationChecker interface {
	Check(ctx context.Context, chain []*x509.Certificate) error
}

// checkRevocation runs Config.Revocation over the chain of e, if set.
func (a *Authenticator) checkRevocation(ctx context.Context, leaf *x509.Certificate, e *entry) error {
	if a.revocation == nil {
		return nil
	}
	chain := make([]*x509.Certificate, 0, 1+len(e.issuers))
	chain = append(chain, leaf)
	chain = append(chain, e.issuers...)
	return a.revocation.Check(ctx, chain)
}

// revocationResult is Authenticate's result for a chain that
// checkRevocation refused.
func (a *Authenticator) revocationResult(ctx context.Context, clientID string, leaf *x509.Certificate, err error) auth.Result {
	if !errors.Is(err, auth.ErrUnavailable) {
		a.logDeny(ctx, clientID, leaf, err)
		return auth.FailResult(auth.NotAuthorized, fmt.Errorf("x509auth: %w", err))
	}
	a.log.LogAttrs(ctx, slog.LevelWarn, "x509auth: no revocation status for the client certificate",
		slog.String("method", a.method),
		slog.String("decision", "unavailable"),
		slog.String("client_id", clientID),
		slog.String("subject", leaf.Subject.String()),
		slog.String("serial", certid.Serial(leaf)),
		slog.String("fingerprint_sha256", certid.Fingerprint(leaf)),
		slog.String("err", err.Error()))
	return auth.UnavailableResult(fmt.Errorf("x509auth: %w", err))
}
