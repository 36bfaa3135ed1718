package x509auth

import (
	"context"
	"crypto/tls"
	"fmt"
)

// ServerTLSConfig returns a copy of base (which supplies the server's
// certificate, versions and the rest; nil means an empty config) that
// requires a client certificate and verifies it against the Authenticator's
// current trust set:
//
//   - ClientAuth is tls.RequireAnyClientCert (tls.RequestClientCert with
//     Config.ClientCertOptional: a client without a certificate may then
//     connect and be authenticated by another method) and ClientCAs is
//     cleared:
//     crypto/tls only insists that a certificate is presented, and
//     verification is done here, so that a reloaded truststore applies to
//     the next handshake without rebuilding the config.
//   - VerifyConnection verifies the presented chain (trusted CA, validity,
//     clientAuth extended key usage, revocation). crypto/tls calls it on
//     full handshakes and on session resumptions alike, so a resumed
//     session of a revoked client fails too. base's own VerifyConnection,
//     if any, runs after it. crypto/tls does not call VerifyPeerCertificate
//     on resumed sessions: base's VerifyPeerCertificate, if any, is called
//     from VerifyConnection on those (with the session's certificates),
//     so that a check written there also judges a client that comes back
//     with a session ticket.
//   - MinVersion is raised to TLS 1.2 if lower.
//
// crypto/tls leaves ConnectionState.VerifiedChains empty with
// RequireAnyClientCert. The verified chain is remembered with the
// certificate, so [Authenticator.Authenticate] on the same connection
// finds it without verifying signatures again.
func (a *Authenticator) ServerTLSConfig(base *tls.Config) *tls.Config {
	var cfg *tls.Config
	if base == nil {
		cfg = &tls.Config{}
	} else {
		cfg = base.Clone()
	}
	cfg.ClientAuth = tls.RequireAnyClientCert
	if a.optional {
		cfg.ClientAuth = tls.RequestClientCert
	}
	cfg.ClientCAs = nil
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	next := cfg.VerifyConnection
	peer := cfg.VerifyPeerCertificate
	// after runs base's own checks: on a resumed session crypto/tls does
	// not call VerifyPeerCertificate, so it is called here.
	after := func(cs *tls.ConnectionState) error {
		if peer != nil && cs.DidResume {
			raw := make([][]byte, len(cs.PeerCertificates))
			for i, c := range cs.PeerCertificates {
				raw[i] = c.Raw
			}
			if err := peer(raw, cs.VerifiedChains); err != nil {
				return err
			}
		}
		if next != nil {
			return next(*cs)
		}
		return nil
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 || cs.PeerCertificates[0] == nil {
			if !a.optional {
				return fmt.Errorf("x509auth: no client certificate")
			}
			return after(&cs)
		}
		if _, err := a.verify(&cs); err != nil {
			a.logDeny(context.Background(), "", cs.PeerCertificates[0], err)
			return fmt.Errorf("x509auth: %w", err)
		}
		return after(&cs)
	}
	return cfg
}
