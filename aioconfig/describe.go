package aioconfig

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/mqttauth/mqttauth/auth"
)

// Describe writes the effective configuration: each port with its
// address, TLS, chain and policy, the session settings, the brute-force
// defence and the watched sources. It is what the example broker's -check-config prints.
func (b *Broker) Describe(w io.Writer) error {
	var sb strings.Builder
	for _, p := range b.CurrentPorts() {
		fmt.Fprintf(&sb, "port %s on %s\n", p.Name, p.Address)
		switch {
		case p.TLS == nil:
			sb.WriteString("  transport: plain TCP (no TLS: development, or behind a TLS-terminating load balancer)\n")
		default:
			leaf := p.TLS.Certificates[0].Leaf
			subject := ""
			if leaf != nil {
				subject = leaf.Subject.String() + ", expires " + leaf.NotAfter.UTC().Format(time.DateOnly)
			}
			fmt.Fprintf(&sb, "  transport: TLS, server certificate %s, client certificates %s\n", subject, clientAuthName(p.TLS.ClientAuth))
		}
		fmt.Fprintf(&sb, "  authentication: BrokerAuthentication %s\n", p.Spec.AuthenticationRef)
		for i, m := range p.methods {
			fmt.Fprintf(&sb, "    %d. %s\n", i+1, m)
		}
		fmt.Fprintf(&sb, "  authorization: %s\n", p.policy)
	}
	s := b.Session
	fmt.Fprintf(&sb, "session: onExpiry %s, exchangeTimeout %s, allowIdentityChange %t, reauth %d in a row then 1 per %s\n",
		cmp.Or(s.OnExpiry, "disconnect"), cmp.Or(s.ExchangeTimeout, "30s"), s.AllowIdentityChange,
		cmp.Or(s.ReauthBurst, auth.DefaultReauthBurst), cmp.Or(s.ReauthInterval, "1s"))
	fmt.Fprintf(&sb, "throttle: %s\n", b.throttle.Load().desc)
	if l := b.Limits; l != nil {
		fmt.Fprintf(&sb, "limits: maxPacketSize %s, connectTimeout %s, maxUnauthenticatedConnections %s, maxUnauthenticatedPerSource %s\n",
			orDefault(l.MaxPacketSize), cmp.Or(l.ConnectTimeout, "default"), orDefault(l.MaxUnauthenticatedConnections),
			orDefault(l.MaxUnauthenticatedPerSource))
	} else {
		fmt.Fprintf(&sb, "limits: the adapter's defaults\n")
	}
	switch {
	case b.Admin.Address == "":
		sb.WriteString("admin: off\n")
	default:
		fmt.Fprintf(&sb, "admin: http://%s (/metrics, /healthz, /readyz", b.Admin.Address)
		if b.Admin.Pprof {
			sb.WriteString(", /debug/pprof")
		}
		sb.WriteString(")\n")
	}
	a := b.Audit
	fmt.Fprintf(&sb, "audit: passes at %s (re-authentications at %s), refusals, disconnects and denies at %s, ",
		a.Level, min(a.Level, slog.LevelDebug), a.DenyLevel)
	switch a.SampleAllows {
	case 0:
		sb.WriteString("authorization allows not logged\n")
	case 1:
		sb.WriteString("every authorization allow logged (one record per delivered message)\n")
	default:
		fmt.Fprintf(&sb, "one authorization allow in %d logged\n", a.SampleAllows)
	}
	var watches []auth.Watch // of the sources in force
	for _, r := range b.gen.Load().resources() {
		watches = append(watches, r.watches...)
	}
	for _, wt := range append(watches, auth.Watch{Name: ConfigurationWatch}) {
		fmt.Fprintf(&sb, "watched: %s (a change re-checks live sessions)\n", wt.Name)
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

func clientAuthName(c tls.ClientAuthType) string {
	switch c {
	case tls.RequireAnyClientCert, tls.RequireAndVerifyClientCert:
		return "required"
	case tls.RequestClientCert, tls.VerifyClientCertIfGiven:
		return "requested (optional)"
	}
	return "not asked for"
}

// orDefault prints n, or "default" for zero.
func orDefault(n int) string {
	if n == 0 {
		return "default"
	}
	return fmt.Sprint(n)
}
