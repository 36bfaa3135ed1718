package aioconfig_test

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/x509auth"
)

func mustRead(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(data)
}

const settingsDoc = "apiVersion: mqttauth.dev/v1alpha1\nkind: MqttAuthSettings\nspec: "

// TestAdminSettings: the admin section's defaults (loopback 9090, no
// pprof, info-level audit without allows), "off" and "" turning the
// listener off, and its values reaching Broker.Admin, AuthConfig().Audit
// and Describe.
func TestAdminSettings(t *testing.T) {
	for _, tc := range []struct {
		name, spec string
		want       aioconfig.AdminListener
		audit      auth.AuditConfig
		describe   []string
	}{
		{"no_section", "{}", aioconfig.AdminListener{Address: "127.0.0.1:9090"}, auth.AuditConfig{},
			[]string{"admin: http://127.0.0.1:9090 (/metrics, /healthz, /readyz)\n", "audit: passes at INFO (re-authentications at DEBUG), refusals, disconnects and denies at INFO, authorization allows not logged"}},
		{"off", "{admin: {address: 'off'}}", aioconfig.AdminListener{}, auth.AuditConfig{}, []string{"admin: off\n"}},
		{"empty", `{admin: {address: ""}}`, aioconfig.AdminListener{}, auth.AuditConfig{}, []string{"admin: off\n"}},
		{"all", "{admin: {address: ':9191', pprof: true, audit: {level: debug, denyLevel: warn, sampleAllows: 10}}}",
			aioconfig.AdminListener{Address: ":9191", Pprof: true},
			auth.AuditConfig{Level: slog.LevelDebug, DenyLevel: slog.LevelWarn, SampleAllows: 10},
			[]string{"admin: http://:9191 (/metrics, /healthz, /readyz, /debug/pprof)\n", "audit: passes at DEBUG (re-authentications at DEBUG), refusals, disconnects and denies at WARN, one authorization allow in 10 logged"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			b, _ := build(t, f.dir, strings.ReplaceAll(mustRead(t, f.dir+"/broker.yaml"), "session: {onExpiry: close, exchangeTimeout: 10s}", "admin: "+adminOf(tc.spec)))
			require.Equal(t, tc.want, b.Admin)
			require.Equal(t, tc.audit, b.AuthConfig().Audit)
			out := describe(t, b)
			for _, w := range tc.describe {
				require.Contains(t, out, w)
			}
		})
	}
}

// adminOf returns the admin value of a settings spec "{admin: X}", or null.
func adminOf(spec string) string {
	v, ok := strings.CutPrefix(spec, "{admin: ")
	if !ok {
		return "null"
	}
	return strings.TrimSuffix(v, "}")
}

// TestAdminSettingsErrors: a wrong admin value or field is refused with
// its document, field, value and the fix.
func TestAdminSettingsErrors(t *testing.T) {
	for _, tc := range []struct {
		name, spec string
		is         error
		want       []string
	}{
		{"address_no_port", "{admin: {address: localhost}}", aioconfig.ErrInvalidValue,
			[]string{`MqttAuthSettings "default"`, `spec.admin.address "localhost"`, "HOST:PORT"}},
		{"level", "{admin: {audit: {level: loud}}}", aioconfig.ErrInvalidValue,
			[]string{`spec.admin.audit.level "loud"`, "debug, info, warn or error"}},
		{"deny_level", "{admin: {audit: {denyLevel: verbose}}}", aioconfig.ErrInvalidValue,
			[]string{`spec.admin.audit.denyLevel "verbose"`}},
		{"unknown_field", "{admin: {addr: ':1'}}", aioconfig.ErrUnknownField, []string{"spec.admin.addr"}},
		{"field_case", "{admin: {pProf: true}}", aioconfig.ErrUnknownField, []string{"spec.admin.pProf"}},
		{"sample_type", "{admin: {audit: {sampleAllows: -1}}}", aioconfig.ErrSyntax, []string{"admin"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := aioconfig.Parse([]byte(settingsDoc+tc.spec), "test.yaml", "")
			require.ErrorIs(t, err, tc.is)
			require.Contains(t, err.Error(), "test.yaml: document 1")
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

// recorder is an auth.Observer that keeps the events.
type recorder struct {
	mu    sync.Mutex
	authn []auth.AuthnEvent
	comp  []auth.ComponentEvent
	sess  []auth.SessionEvent
}

func (r *recorder) Authenticated(ev auth.AuthnEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.authn = append(r.authn, ev)
}
func (r *recorder) Authorized(auth.AuthzEvent) {}
func (r *recorder) Session(ev auth.SessionEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sess = append(r.sess, ev)
}
func (r *recorder) Component(ev auth.ComponentEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.comp = append(r.comp, ev)
}

func (r *recorder) methods() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var m []string
	for _, ev := range r.authn {
		m = append(m, ev.Method+" "+ev.Outcome.String())
	}
	return m
}

func (r *recorder) reloads() []auth.Component {
	r.mu.Lock()
	defer r.mu.Unlock()
	var c []auth.Component
	for _, ev := range r.comp {
		if ev.Kind == auth.Reload {
			c = append(c, ev.Component)
		}
	}
	return c
}

// TestObserverReachesSources: Options.Observer is given to every source
// Build makes (the first loads of the truststore, the users file and the
// policy file are reported) and to the Manager of AuthConfig, which labels
// each port's methods by their own names, not the Broker's.
func TestObserverReachesSources(t *testing.T) {
	rec := &recorder{}
	f := newFixtureWith(t, aioconfig.Options{Logger: quiet, Observer: rec})
	reloads := rec.reloads()
	for _, c := range []auth.Component{auth.ComponentTruststore, auth.ComponentUsers, auth.ComponentPolicy} {
		require.Contains(t, reloads, c)
	}
	require.Equal(t, rec, f.broker.AuthConfig().Observer)

	pub, loc := f.broker.Ports[0], f.broker.Ports[1]
	_, _, r := f.tlsConnect(t, pub, pub.Name, f.pki.Thermostat)
	require.Equal(t, auth.Success, r.Packet.Code, "%v", r.Err)
	_, _, r = f.scramConnect(t, loc.Name, "sample", "wrong")
	require.True(t, r.Packet.Code.IsFailure())
	m := rec.methods()
	require.NotEmpty(t, m)
	for _, s := range m {
		require.NotContains(t, s, "aioconfig", "the Broker is not labelled as a method")
	}
	require.Contains(t, m, x509auth.Method+" Pass")
	require.True(t, slices.ContainsFunc(m, func(s string) bool { return strings.HasPrefix(s, "SCRAM ") }), "%v", m)
}

// TestReadyChecks: a check per loaded source, named after it, each passing.
func TestReadyChecks(t *testing.T) {
	f := newFixture(t)
	var names []string
	for _, c := range f.broker.ReadyChecks() {
		names = append(names, c.Name)
		require.NoError(t, c.Check(context.Background()), c.Name)
	}
	require.ElementsMatch(t, []string{"truststore fabrikam-ca", "users scram-users", "policy local-policy.yaml"}, names)
}
