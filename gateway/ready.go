package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"
)

// UpstreamCheck is the readiness check of a gateway's broker leg: whether
// the upstream broker can be reached at all. A gateway whose broker is
// down refuses every client that authenticates (CONNACK 0x88), so it must
// not report ready: give [UpstreamCheck.Check] to the admin listener's
// /readyz (admin.Check{Name: "upstream", Check: c.Check}).
//
// A check dials Config.Upstream with Config.Dialer and, with
// Config.UpstreamTLS, completes the TLS handshake (with
// Config.ProxyProtocol it first sends a PROXY v2 LOCAL header, the form
// meant for health checks); then it closes the connection without an MQTT
// CONNECT, so that no credential or client identifier is involved. The
// broker may log the connection as closed by an unknown client.
type UpstreamCheck struct {
	cfg Config
}

// NewUpstreamCheck returns the readiness check of the broker leg of a
// gateway configured with cfg (the Config given to [New]): only Upstream,
// UpstreamTLS, Dialer, ProxyProtocol and UpstreamTimeout are used.
func NewUpstreamCheck(cfg Config) *UpstreamCheck {
	if cfg.Dialer == nil {
		cfg.Dialer = &net.Dialer{}
	}
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = DefaultUpstreamTimeout
	}
	return &UpstreamCheck{cfg: cfg}
}

// Check dials the broker, bounded by ctx and Config.UpstreamTimeout; it
// returns nil when the broker accepted the connection (and the TLS
// handshake), else an error wrapping [ErrUpstream] that names the address.
func (c *UpstreamCheck) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.UpstreamTimeout)
	defer cancel()
	nc, err := c.cfg.Dialer.DialContext(ctx, "tcp", c.cfg.Upstream)
	if err != nil {
		return fmt.Errorf("%w %s unreachable: %w", ErrUpstream, c.cfg.Upstream, err)
	}
	defer nc.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(deadline)
	}
	if c.cfg.ProxyProtocol {
		if _, err := nc.Write(proxyHeader(nil, nil)); err != nil {
			return fmt.Errorf("%w %s: %w", ErrUpstream, c.cfg.Upstream, err)
		}
	}
	if c.cfg.UpstreamTLS != nil {
		tc := tls.Client(nc, c.cfg.UpstreamTLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("%w %s: TLS handshake: %w", ErrUpstream, c.cfg.Upstream, err)
		}
		_ = tc.SetDeadline(time.Now().Add(100 * time.Millisecond))
		_ = tc.CloseWrite() // close_notify, so the broker sees an orderly close
	}
	return nil
}
