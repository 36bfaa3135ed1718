package satauth_test

// Integration tests against a real kube-apiserver and etcd, built by
// scripts/kube-testenv and started once per test package on loopback.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/satauth"
)

const (
	kubeVersion = "v1.36.3"
	kubeIssuer  = "https://kubernetes.default.svc.cluster.local"
)

// kubeEnv is a running etcd and kube-apiserver.
type kubeEnv struct {
	url        string
	caFile     string
	adminToken string
	dir        string
	hc         *http.Client
	procs      []*exec.Cmd
	logs       []*bytes.Buffer
}

var (
	kubeOnce sync.Once
	kube     *kubeEnv
	kubeErr  error
	kubeSkip string
)

// kubeBinDir returns where the binaries are: $MQTTAUTH_KUBE_BIN or the
// default cache directory of scripts/kube-testenv.
func kubeBinDir() string {
	if d := os.Getenv("MQTTAUTH_KUBE_BIN"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "mqttauth", "kube", kubeVersion)
}

// requireKube returns the shared environment, starting it on first use. A
// missing binary skips the test, except with CI=true where it fails it.
func requireKube(t *testing.T) *kubeEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test with a real kube-apiserver: not in -short mode")
	}
	kubeOnce.Do(func() {
		dir := kubeBinDir()
		for _, b := range []string{"etcd", "kube-apiserver"} {
			if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
				kubeSkip = fmt.Sprintf("no %s in %s: run scripts/kube-testenv and set MQTTAUTH_KUBE_BIN to the directory it prints", b, dir)
				return
			}
		}
		kube, kubeErr = startKube(dir)
	})
	if kubeSkip != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and the real kube-apiserver is missing: %s", kubeSkip)
		}
		t.Skip(kubeSkip)
	}
	if kubeErr != nil {
		t.Fatalf("starting kube-apiserver: %v", kubeErr)
	}
	return kube
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startKube(bin string) (_ *kubeEnv, err error) {
	dir, err := os.MkdirTemp("", "mqttauth-kube-")
	if err != nil {
		return nil, err
	}
	env := &kubeEnv{dir: dir}
	defer func() {
		if err != nil {
			env.stop()
		}
	}()
	var ports [3]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	etcdClient := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	etcdPeer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])

	// Service account signing key, serving certificate, admin token.
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if e := os.WriteFile(p, data, 0o600); e != nil && err == nil {
			err = e
		}
		return p
	}
	saKeyFile := write("sa.key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}))
	saPubFile := write("sa.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	tb := &setupTB{}
	ca := authtest.NewRootCA(tb, "mqttauth test kube CA")
	leaf := ca.Leaf(tb, "kube-apiserver", authtest.WithIPs(net.IPv4(127, 0, 0, 1)), authtest.WithDNSNames("localhost"),
		authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
	if tb.err != nil {
		return nil, tb.err
	}
	env.caFile = write("ca.crt", authtest.CertsPEM(ca.Cert))
	certFile := write("apiserver.crt", leaf.ChainPEM())
	keyFile := write("apiserver.key", authtest.KeyPEM(tb, leaf.Key))
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	env.adminToken = hex.EncodeToString(b)
	tokens := write("tokens.csv", []byte(env.adminToken+`,admin,admin,"system:masters"`+"\n"))
	if err != nil {
		return nil, err
	}

	start := func(name string, args ...string) error {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		var logBuf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return err
		}
		env.procs = append(env.procs, cmd)
		env.logs = append(env.logs, &logBuf)
		return nil
	}
	if err := start("etcd", "--data-dir", filepath.Join(dir, "etcd"), "--name", "default",
		"--listen-client-urls", etcdClient, "--advertise-client-urls", etcdClient,
		"--listen-peer-urls", etcdPeer, "--initial-advertise-peer-urls", etcdPeer,
		"--initial-cluster", "default="+etcdPeer, "--log-level", "warn"); err != nil {
		return nil, err
	}
	if err := start("kube-apiserver",
		"--etcd-servers="+etcdClient,
		"--service-account-issuer="+kubeIssuer,
		"--service-account-key-file="+saPubFile,
		"--service-account-signing-key-file="+saKeyFile,
		"--token-auth-file="+tokens,
		"--authorization-mode=RBAC",
		"--secure-port="+strconv.Itoa(ports[2]),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--cert-dir="+filepath.Join(dir, "certs"),
		"--tls-cert-file="+certFile,
		"--tls-private-key-file="+keyFile,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--v=0"); err != nil {
		return nil, err
	}
	env.url = fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	env.hc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12},
	}}

	deadline := time.Now().Add(90 * time.Second)
	for {
		var body string
		body, err = env.call(http.MethodGet, "/readyz", env.adminToken, nil)
		if err == nil && body == "ok" {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("kube-apiserver not ready after 90 s: %v\n%s", err, env.tail())
		}
		for _, p := range env.procs {
			if p.ProcessState != nil {
				return nil, fmt.Errorf("%s exited\n%s", p.Path, env.tail())
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	return env, env.setup()
}

func (e *kubeEnv) tail() string {
	var s strings.Builder
	for _, l := range e.logs {
		out := l.String()
		if len(out) > 3000 {
			out = out[len(out)-3000:]
		}
		s.WriteString(out)
	}
	return s.String()
}

// setupTB lets the authtest PKI helpers run outside a test.
type setupTB struct {
	testing.TB
	err error
}

func (s *setupTB) Helper() {}
func (s *setupTB) Fatalf(format string, args ...any) {
	s.err = fmt.Errorf(format, args...)
	panic(s.err)
}

// stopKube kills the processes and removes the directory; TestMain calls it.
func stopKube() {
	if kube != nil {
		kube.stop()
	}
}

func (e *kubeEnv) stop() {
	for i := len(e.procs) - 1; i >= 0; i-- {
		p := e.procs[i]
		_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
		_ = p.Wait()
	}
	if e.hc != nil {
		e.hc.CloseIdleConnections()
	}
	_ = os.RemoveAll(e.dir)
}

// call makes one API call with token and returns the body; non-2xx is an
// error carrying the status.
func (e *kubeEnv) call(method, path, token string, body any) (string, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return "", err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode/100 != 2 {
		return string(b), &httpStatus{resp.StatusCode, string(b)}
	}
	return string(b), nil
}

type httpStatus struct {
	code int
	body string
}

func (h *httpStatus) Error() string { return fmt.Sprintf("HTTP %d: %s", h.code, h.body) }

func (e *kubeEnv) admin(method, path string, body any) error {
	_, err := e.call(method, path, e.adminToken, body)
	var hs *httpStatus
	if errors.As(err, &hs) && hs.code == http.StatusConflict {
		return nil // already exists
	}
	return err
}

// setup creates the service accounts and RBAC the tests use:
//   - default/mqtt-broker: the broker, bound to system:auth-delegator and
//     a ClusterRole that gets serviceaccounts;
//   - default/no-rbac: a broker identity without those bindings;
//   - default/sensor (annotated) and default/intruder: clients.
func (e *kubeEnv) setup() error {
	for _, sa := range []struct {
		name string
		ann  map[string]string
	}{
		{"mqtt-broker", nil},
		{"no-rbac", nil},
		{"sensor", map[string]string{"aio-broker-auth/group": "authz-sat", "aio-broker-auth/floor": "floor1", "other/x": "y"}},
		{"intruder", nil},
	} {
		if err := e.createSA(sa.name, sa.ann); err != nil {
			return err
		}
	}
	steps := []struct {
		path string
		body any
	}{
		{"/apis/rbac.authorization.k8s.io/v1/clusterroles", map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
			"metadata": map[string]any{"name": "mqtt-sa-reader"},
			"rules":    []any{map[string]any{"apiGroups": []string{""}, "resources": []string{"serviceaccounts"}, "verbs": []string{"get"}}},
		}},
		{"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding("mqtt-broker-auth-delegator", "system:auth-delegator")},
		{"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding("mqtt-broker-sa-reader", "mqtt-sa-reader")},
	}
	for _, s := range steps {
		if err := e.admin(http.MethodPost, s.path, s.body); err != nil {
			return fmt.Errorf("POST %s: %w", s.path, err)
		}
	}
	return nil
}

func (e *kubeEnv) createSA(name string, ann map[string]string) error {
	return e.admin(http.MethodPost, "/api/v1/namespaces/default/serviceaccounts", map[string]any{
		"apiVersion": "v1", "kind": "ServiceAccount",
		"metadata": map[string]any{"name": name, "annotations": ann},
	})
}

func binding(name, role string) map[string]any {
	return map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
		"metadata": map[string]any{"name": name},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
		"subjects": []any{map[string]any{"kind": "ServiceAccount", "name": "mqtt-broker", "namespace": "default"}},
	}
}

// token mints a token for default/name with the TokenRequest API (nil
// audiences: the API server's own audience).
func (e *kubeEnv) token(t *testing.T, name string, audiences []string, seconds int) string {
	t.Helper()
	spec := map[string]any{"expirationSeconds": seconds}
	if audiences != nil {
		spec["audiences"] = audiences
	}
	body, err := e.call(http.MethodPost, "/api/v1/namespaces/default/serviceaccounts/"+name+"/token", e.adminToken, map[string]any{
		"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec,
	})
	require.NoError(t, err)
	var out struct {
		Status struct {
			Token string `json:"token"`
		} `json:"status"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &out))
	require.NotEmpty(t, out.Status.Token)
	return out.Status.Token
}

// brokerConfig returns a Config whose broker identity is default/name.
func (e *kubeEnv) brokerConfig(t *testing.T, name string, mode satauth.Mode) satauth.Config {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(e.token(t, name, nil, 3600)), 0o600))
	return satauth.Config{
		Audiences: []string{"aio-mq", "my-audience"},
		Mode:      mode,
		APIServer: e.url,
		CAFile:    e.caFile,
		TokenFile: tokenFile,
		Issuer:    kubeIssuer,
	}
}

func newKubeAuth(t *testing.T, cfg satauth.Config) (*satauth.Authenticator, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cfg.Logger = newTextLogger(logs)
	a, err := satauth.New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(a.Close)
	return a, logs
}

func TestKube(t *testing.T) {
	env := requireKube(t)

	modes(t, func(t *testing.T, mode satauth.Mode) {
		a, logs := newKubeAuth(t, env.brokerConfig(t, "mqtt-broker", mode))

		t.Run("pass_with_annotations", func(t *testing.T) {
			before := time.Now()
			r := connect(a, env.token(t, "sensor", []string{"aio-mq"}, 600))
			require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
			require.Equal(t, "system:serviceaccount:default:sensor", r.Principal.Username())
			require.Equal(t, map[string]string{"group": "authz-sat", "floor": "floor1"}, attrs(r.Principal))
			exp := r.Principal.Expiry()
			require.WithinDuration(t, before.Add(600*time.Second), exp, 5*time.Second)
		})
		t.Run("second_audience", func(t *testing.T) {
			r := connect(a, env.token(t, "sensor", []string{"my-audience"}, 600))
			require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
		})
		t.Run("wrong_audience", func(t *testing.T) {
			r := connect(a, env.token(t, "sensor", []string{"someone-else"}, 600))
			require.Equal(t, auth.Fail, r.Outcome)
			require.ErrorIs(t, r.Err, satauth.ErrAudience)
		})
		t.Run("api_audience_token_refused", func(t *testing.T) {
			// A token for the API server itself is not for the broker.
			r := connect(a, env.token(t, "sensor", nil, 600))
			require.Equal(t, auth.Fail, r.Outcome)
			require.ErrorIs(t, r.Err, satauth.ErrAudience)
		})
		t.Run("expired", func(t *testing.T) {
			// TokenRequest's shortest expiry is 10 minutes: judge the token
			// 11 minutes from now.
			tok := env.token(t, "sensor", []string{"aio-mq"}, 600)
			cfg := env.brokerConfig(t, "mqtt-broker", mode)
			cfg.Now = func() time.Time { return time.Now().Add(11 * time.Minute) }
			b, _ := newKubeAuth(t, cfg)
			r := connect(b, tok)
			require.Equal(t, auth.Fail, r.Outcome)
			require.ErrorIs(t, r.Err, satauth.ErrExpired)
		})
		t.Run("deleted_service_account", func(t *testing.T) {
			name := "temp-" + strings.ToLower(mode.String())
			require.NoError(t, env.createSA(name, nil))
			tok := env.token(t, name, []string{"aio-mq"}, 600)
			require.NoError(t, env.admin(http.MethodDelete, "/api/v1/namespaces/default/serviceaccounts/"+name, nil))
			b, _ := newKubeAuth(t, env.brokerConfig(t, "mqtt-broker", mode))
			var r auth.Result
			require.Eventually(t, func() bool {
				r = connect(b, tok)
				return r.Outcome == auth.Fail
			}, 10*time.Second, 200*time.Millisecond)
			if mode == satauth.ModeLocal {
				require.ErrorIs(t, r.Err, satauth.ErrServiceAccountNotFound)
			} else {
				require.ErrorIs(t, r.Err, satauth.ErrNotAuthenticated)
			}
		})
		t.Run("forged", func(t *testing.T) {
			tok := env.token(t, "sensor", []string{"aio-mq"}, 600)
			parts := strings.Split(tok, ".")
			forged := parts[0] + "." + b64(`{"aud":["aio-mq"],"exp":9999999999,"iss":"`+kubeIssuer+
				`","sub":"system:serviceaccount:kube-system:admin","kubernetes.io":{"namespace":"kube-system","serviceaccount":{"name":"admin","uid":"x"}}}`) + "." + parts[2]
			r := connect(a, forged)
			require.Equal(t, auth.Fail, r.Outcome)
		})
		t.Run("reauth", func(t *testing.T) {
			m, err := auth.NewManager(auth.Config{Authenticator: a, Authorizer: auth.AllowAuthenticated, Logger: newDiscardLogger()})
			require.NoError(t, err)
			conn := authtest.NewConn()
			s := m.NewSession(conn)
			defer s.Close()
			ctx := context.Background()
			resp := s.Connect(ctx, &auth.Request{ClientID: "c", AuthMethod: satauth.Method,
				AuthData: []byte(env.token(t, "sensor", []string{"aio-mq"}, 600)), ProtocolVersion: 5})
			require.Equal(t, auth.Success, resp.Packet.Code, "%v", resp.Err)
			first := s.Principal().Expiry()
			resp = s.Auth(ctx, auth.Packet{Type: auth.AUTH, Code: auth.ReAuthenticate, Method: satauth.Method,
				Data: []byte(env.token(t, "sensor", []string{"aio-mq"}, 1200))})
			require.Equal(t, auth.Success, resp.Packet.Code, "%v", resp.Err)
			require.True(t, s.Principal().Expiry().After(first.Add(500*time.Second)))
			resp = s.Auth(ctx, auth.Packet{Type: auth.AUTH, Code: auth.ReAuthenticate, Method: satauth.Method,
				Data: []byte(env.token(t, "intruder", []string{"aio-mq"}, 600))})
			require.Equal(t, auth.NotAuthorized, resp.Packet.Code)
			require.True(t, resp.Close)
		})
		require.NotContains(t, logs.String(), "eyJ") // no JWT in the logs
	})

	t.Run("broker_without_rbac", func(t *testing.T) {
		a, logs := newKubeAuth(t, env.brokerConfig(t, "no-rbac", satauth.ModeTokenReview))
		r := connect(a, env.token(t, "sensor", []string{"aio-mq"}, 600))
		require.Equal(t, auth.Unavailable, r.Outcome)
		require.ErrorIs(t, r.Err, satauth.ErrBrokerForbidden)
		require.Contains(t, r.Err.Error(), "system:auth-delegator")
		require.Contains(t, logs.String(), "level=ERROR")
		require.Contains(t, logs.String(), "system:auth-delegator")
	})
	t.Run("broker_without_serviceaccount_rbac_local", func(t *testing.T) {
		a, logs := newKubeAuth(t, env.brokerConfig(t, "no-rbac", satauth.ModeLocal))
		r := connect(a, env.token(t, "sensor", []string{"aio-mq"}, 600))
		require.Equal(t, auth.Unavailable, r.Outcome, "%v", r.Err)
		require.ErrorIs(t, r.Err, satauth.ErrBrokerForbidden)
		require.Contains(t, logs.String(), "get on serviceaccounts")
	})
	t.Run("broker_token_wrong", func(t *testing.T) {
		cfg := env.brokerConfig(t, "mqtt-broker", satauth.ModeTokenReview)
		require.NoError(t, os.WriteFile(cfg.TokenFile, []byte("not-a-token"), 0o600))
		a, logs := newKubeAuth(t, cfg)
		r := connect(a, env.token(t, "sensor", []string{"aio-mq"}, 600))
		require.Equal(t, auth.Unavailable, r.Outcome)
		require.ErrorIs(t, r.Err, satauth.ErrBrokerUnauthorized)
		require.Contains(t, logs.String(), "TokenFile")
	})
	t.Run("local_issuer_is_the_configured_one", func(t *testing.T) {
		// Discovery is fetched from the loopback URL; its issuer is the
		// in-cluster name, which must match Config.Issuer.
		cfg := env.brokerConfig(t, "mqtt-broker", satauth.ModeLocal)
		cfg.Issuer = env.url
		a, _ := newKubeAuth(t, cfg)
		r := connect(a, env.token(t, "sensor", []string{"aio-mq"}, 600))
		require.Equal(t, auth.Unavailable, r.Outcome)
		require.ErrorContains(t, r.Err, kubeIssuer)
	})
}
