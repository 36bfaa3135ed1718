package sat_test

// The example broker PROCESS with a ServiceAccountToken method whose watch
// is on (aioconfig: the satauth follower is one of the Broker's watches,
// subscribed to by the Manager), against a REAL kube-apiserver: deleting
// a connected mosquitto_sub client's ServiceAccount disconnects it with
// DISCONNECT 0x87; a broker whose identity lacks RBAC says so in one line
// before its listeners open, and keeps running.

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/examples/e2e/proc"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/satauth/kubetest"
)

// watchedSATConfig is proc.SATConfig in tokenReview mode with the new
// serviceAccountTokenSettings written out (watch on), Subscribe allowed
// where Publish is, so that mosquitto_sub stays connected, and the admin
// listener (/readyz) on adminAddr.
func watchedSATConfig(t *testing.T, pki, apiServer, caFile, tokenFile, adminAddr string) string {
	t.Helper()
	cfg := proc.SATConfig(pki, apiServer, caFile, tokenFile, "tokenReview", kubetest.Issuer)
	for _, r := range []struct{ old, new string }{
		{"        mode: tokenReview\n", "        mode: tokenReview\n        watch: true\n        cacheTTL: 2m\n        attributeTTL: 30s\n"},
		{"          - method: Publish\n            topics: [\"buildings/{principal.attributes.building}/#\"]\n",
			"          - method: Publish\n            topics: [\"buildings/{principal.attributes.building}/#\"]\n" +
				"          - method: Subscribe\n            topics: [\"buildings/{principal.attributes.building}/#\"]\n"},
	} {
		require.Equal(t, 1, strings.Count(cfg, r.old), "proc.SATConfig changed: %q", r.old)
		cfg = strings.Replace(cfg, r.old, r.new, 1)
	}
	return cfg + "---\napiVersion: mqttauth.dev/v1alpha1\nkind: MqttAuthSettings\nspec:\n  admin: {address: \"" + adminAddr + "\", audit: {sampleAllows: 1}}\n"
}

// readyz returns the status and body of the broker's /readyz?verbose.
func readyz(t *testing.T, adminAddr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/readyz?verbose")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestSATWatchBrokerProcess(t *testing.T) {
	env := kubetest.Require(t)
	sub := proc.RequireTool(t, "mosquitto_sub", "mosquitto-clients")
	pki := t.TempDir()
	_, err := devpki.Ensure(pki, time.Now())
	require.NoError(t, err)
	ca := filepath.Join(pki, devpki.ServerRootCA)

	t.Run("deleted_account_disconnects_mosquitto_sub", func(t *testing.T) {
		require.NoError(t, env.CreateServiceAccount("proc-broker", nil))
		require.NoError(t, env.BindBroker("proc-broker"))
		require.NoError(t, env.CreateServiceAccount("proc-sensor", map[string]string{
			"aio-broker-auth/group": "sensors", "aio-broker-auth/building": "17",
		}))
		adminAddr := proc.FreeAddr(t)
		cfg := watchedSATConfig(t, pki, env.URL, env.CAFile, env.TokenFile(t, "proc-broker", nil, 3600), adminAddr)
		broker, port := proc.StartBroker(t, t.TempDir(), cfg)
		out := broker.Out.String()
		require.Contains(t, out, `msg="satauth: ready"`)
		require.Less(t, strings.Index(out, `msg="satauth: ready"`), strings.Index(out, `msg="broker listening"`),
			"the readiness check runs before the listeners open")
		broker.WaitFor(t, 5*time.Second, `msg="admin listening"`)
		code, body := readyz(t, adminAddr)
		require.Equal(t, http.StatusOK, code, body)
		require.Contains(t, body, "[+] serviceAccountToken (BrokerAuthentication sat method 1) ok")

		p := proc.Start(t, sub, "-V", "mqttv5", "-h", "localhost", "-p", port, "--cafile", ca,
			"-d", "-i", "proc-sensor", "-t", "buildings/17/#",
			"-D", "connect", "authentication-method", "K8S-SAT",
			"-D", "connect", "authentication-data", env.Token(t, "proc-sensor", []string{"aio-mq"}, 600))
		// mosquitto_sub's output is buffered until it exits: the broker's
		// audit records say it connected and subscribed.
		broker.WaitFor(t, 10*time.Second, `msg="mqttauth decision"`, "decision=pass", "client_id=proc-sensor")
		broker.WaitFor(t, 10*time.Second, `msg="mqttauth decision"`, "decision=authorize_allow", "client_id=proc-sensor", "topic=buildings/17/#")
		// The follower lists then watches the client's namespace; the
		// metrics say the watch is alive (its lists and streams, no failure).
		require.Eventually(t, func() bool {
			resp, err := http.Get("http://" + adminAddr + "/metrics")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return strings.Contains(string(b), `mqttauth_backend_calls_total{component="kubewatch",result="ok"}`) &&
				!strings.Contains(string(b), `mqttauth_backend_calls_total{component="kubewatch",result="failed"}`)
		}, 10*time.Second, 100*time.Millisecond, "the watch reports its lists and streams")
		time.Sleep(500 * time.Millisecond)

		start := time.Now()
		require.NoError(t, env.DeleteServiceAccount("proc-sensor"))
		exited, _ := p.Wait(10 * time.Second)
		took := time.Since(start)
		t.Logf("DELETE serviceaccount -> mosquitto_sub got DISCONNECT and ended in %v:\n%s", took, p.Out.String())
		require.True(t, exited, "mosquitto_sub still connected after 10 s")
		require.Contains(t, p.Out.String(), "Received DISCONNECT (135)") // 0x87 Not authorized
		require.Less(t, took, 5*time.Second)
		broker.WaitFor(t, 5*time.Second, `msg="auth: re-checked sessions after a change"`, `source="kubernetes serviceaccounts and pods of serviceAccountToken`, "disconnected=1")
		require.NotContains(t, p.Out.String()+broker.Out.String(), "eyJ") // no token in any log
		require.NoError(t, broker.Stop())
	})

	t.Run("broker_without_rbac_says_what_is_missing_before_clients", func(t *testing.T) {
		// An identity with no role binding: SelfSubjectAccessReview is
		// allowed to everyone, TokenReview and the reads are not.
		require.NoError(t, env.CreateServiceAccount("proc-norbac", nil))
		adminAddr := proc.FreeAddr(t)
		cfg := watchedSATConfig(t, pki, env.URL, env.CAFile, env.TokenFile(t, "proc-norbac", nil, 3600), adminAddr)
		broker, _ := proc.StartBroker(t, t.TempDir(), cfg) // running: not ready is not fatal
		out := broker.Out.String()
		t.Logf("broker start-up:\n%s", out)
		require.Equal(t, 1, strings.Count(out, `msg="satauth: not ready"`), "one line")
		at := strings.Index(out, `msg="satauth: not ready"`)
		line := out[strings.LastIndexByte(out[:at], '\n')+1:]
		line = line[:strings.IndexByte(line, '\n')]
		for _, want := range []string{
			"level=ERROR",
			"may not create tokenreviews.authentication.k8s.io, get serviceaccounts, list serviceaccounts, watch serviceaccounts, list pods, watch pods",
			`add to a ClusterRole bound to it: {apiGroups: [\"authentication.k8s.io\"], resources: [\"tokenreviews\"], verbs: [\"create\"]}`,
			`{apiGroups: [\"\"], resources: [\"serviceaccounts\"], verbs: [\"get\", \"list\", \"watch\"]}`,
			`{apiGroups: [\"\"], resources: [\"pods\"], verbs: [\"list\", \"watch\"]}`,
		} {
			require.Contains(t, line, want)
		}
		require.Less(t, strings.Index(out, `msg="satauth: not ready"`), strings.Index(out, `msg="broker listening"`),
			"said before the listeners open")
		require.Zero(t, broker.Out.Count(`msg="mqttauth decision"`), "no client has arrived")
		broker.WaitFor(t, 5*time.Second, `msg="admin listening"`)
		code, body := readyz(t, adminAddr)
		t.Logf("/readyz %d:\n%s", code, body)
		require.Equal(t, http.StatusServiceUnavailable, code)
		require.Contains(t, body, "[-] serviceAccountToken (BrokerAuthentication sat method 1): satauth: not ready: the broker's identity may not create tokenreviews")
		require.Equal(t, 1, broker.Out.Count(`msg="satauth: not ready"`), "the probe does not repeat the check at its own pace")
		exited, _ := broker.Wait(time.Second)
		require.False(t, exited, "a broker that is not ready keeps running")

		// RBAC granted at run time: the background check notices within
		// seconds (satauth.DefaultReadyRetry), with no probe, and says so.
		require.NoError(t, env.BindBroker("proc-norbac"))
		broker.WaitFor(t, 3*satauth.DefaultReadyRetry, `msg="satauth: ready"`, "not_ready_for=")
		code, body = readyz(t, adminAddr)
		require.Equal(t, http.StatusOK, code, body)
		require.NoError(t, broker.Stop())
	})
}
