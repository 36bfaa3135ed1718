package kubetest

import (
	"bytes"
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
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/internal/freeport"
)

const (
	// Version is the Kubernetes version scripts/kube-testenv builds.
	Version = "v1.36.3"
	// Issuer is the service account issuer the API server is started with,
	// the one of a default cluster.
	Issuer = "https://kubernetes.default.svc.cluster.local"
	// Namespace is where the helpers create service accounts.
	Namespace = "default"
)

// BinDir returns where the binaries are: $MQTTAUTH_KUBE_BIN, or the default
// cache directory of scripts/kube-testenv.
func BinDir() string {
	if d := os.Getenv("MQTTAUTH_KUBE_BIN"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "mqttauth", "kube", Version)
}

// Missing says which binary is missing from dir and how to get it; empty
// when both are there.
func Missing(dir string) string {
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Sprintf("no %s in %s: run scripts/kube-testenv and set MQTTAUTH_KUBE_BIN to the directory it prints", b, dir)
		}
	}
	return ""
}

// Env is a running etcd and kube-apiserver.
type Env struct {
	// URL is the API server's base URL, https://127.0.0.1:PORT.
	URL string
	// CAFile is a PEM file with the CA of the API server's certificate.
	CAFile string
	// AdminToken is a bearer token of a system:masters user.
	AdminToken string

	dir   string
	hc    *http.Client
	procs []proc
	logs  []*syncBuffer
}

// proc is a started process; done is closed when it has exited and been
// waited for.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

var (
	sharedOnce sync.Once
	shared     *Env
	sharedErr  error
	sharedSkip string
)

// Require returns the environment shared by the test binary, starting it
// on first use (about 15 s). Without the binaries it skips the test with a
// message naming scripts/kube-testenv, or fails it when CI=true; in -short
// mode it skips.
func Require(tb testing.TB) *Env {
	tb.Helper()
	if testing.Short() {
		tb.Skip("integration test with a real kube-apiserver: not in -short mode")
	}
	sharedOnce.Do(func() {
		dir := BinDir()
		if sharedSkip = Missing(dir); sharedSkip != "" {
			return
		}
		shared, sharedErr = Start(dir)
	})
	if sharedSkip != "" {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("CI=true and the real kube-apiserver is missing: %s", sharedSkip)
		}
		tb.Skip(sharedSkip)
	}
	if sharedErr != nil {
		tb.Fatalf("starting kube-apiserver: %v", sharedErr)
	}
	return shared
}

// StopShared stops the environment Require started, if any; call it from
// TestMain after m.Run.
func StopShared() {
	if shared != nil {
		shared.Stop()
	}
}

// errPortTaken is an attempt of Start that lost a port to another process.
var errPortTaken = errors.New("kubetest: a port was taken before the server bound it")

// Start starts etcd and kube-apiserver from the binaries in bin, on free
// loopback ports with a scratch directory, and waits until /readyz answers.
// An attempt that loses a port to another process between the check and
// the bind is retried with new ports, three times at most. The caller must
// Stop it.
func Start(bin string) (*Env, error) {
	var err error
	for range 3 {
		var env *Env
		if env, err = start(bin); !errors.Is(err, errPortTaken) {
			return env, err
		}
	}
	return nil, err
}

func start(bin string) (_ *Env, err error) {
	dir, err := os.MkdirTemp("", "mqttauth-kube-")
	if err != nil {
		return nil, err
	}
	env := &Env{dir: dir}
	defer func() {
		if err != nil {
			env.Stop()
		}
	}()
	var ports [3]int
	for i := range ports {
		if ports[i], err = freeport.Loopback(); err != nil {
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
	ca, leaf, keyPEM, err := servingPKI()
	if err != nil {
		return nil, err
	}
	env.CAFile = write("ca.crt", authtest.CertsPEM(ca.Cert))
	certFile := write("apiserver.crt", leaf.ChainPEM())
	keyFile := write("apiserver.key", keyPEM)
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	env.AdminToken = hex.EncodeToString(b)
	tokens := write("tokens.csv", []byte(env.AdminToken+`,admin,admin,"system:masters"`+"\n"))
	if err != nil {
		return nil, err
	}

	start := func(name string, args ...string) error {
		return env.launch(filepath.Join(bin, name), args...)
	}
	if err := start("etcd", "--data-dir", filepath.Join(dir, "etcd"), "--name", "default",
		"--listen-client-urls", etcdClient, "--advertise-client-urls", etcdClient,
		"--listen-peer-urls", etcdPeer, "--initial-advertise-peer-urls", etcdPeer,
		"--initial-cluster", "default="+etcdPeer, "--log-level", "warn"); err != nil {
		return nil, err
	}
	if err := start("kube-apiserver",
		"--etcd-servers="+etcdClient,
		"--service-account-issuer="+Issuer,
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
	env.URL = fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	env.hc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12},
	}}

	if err := env.waitReady(); err != nil {
		return nil, err
	}
	return env, nil
}

// launch starts one process, logging into a buffer of env.
func (e *Env) launch(path string, args ...string) error {
	cmd := exec.Command(path, args...)
	logBuf := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logBuf, logBuf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	e.procs = append(e.procs, proc{cmd, done})
	e.logs = append(e.logs, logBuf)
	return nil
}

// RestartAPIServer kills kube-apiserver, as a crash or an upgrade would
// (etcd keeps the cluster's state), waits for down, then starts it again
// with the same flags on the same port and waits until it is ready. It
// returns how long the API was down.
func (e *Env) RestartAPIServer(down time.Duration) error {
	i := len(e.procs) - 1 // kube-apiserver is started last
	p := e.procs[i]
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	e.procs, e.logs = e.procs[:i], e.logs[:i]
	e.hc.CloseIdleConnections()
	time.Sleep(down)
	if err := e.launch(p.cmd.Path, p.cmd.Args[1:]...); err != nil {
		return err
	}
	return e.waitReady()
}

// waitReady waits until /readyz answers ok, or a process exits.
func (e *Env) waitReady() error {
	env := e
	var err error
	deadline := time.Now().Add(90 * time.Second)
	for {
		var body string
		body, err = env.Call(http.MethodGet, "/readyz", env.AdminToken, nil)
		if err == nil && body == "ok" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready after 90 s: %v\n%s", err, env.Tail())
		}
		for i, p := range env.procs {
			select {
			case <-p.done:
				if strings.Contains(env.logs[i].String(), "address already in use") {
					return fmt.Errorf("%w: %s exited\n%s", errPortTaken, p.cmd.Path, env.Tail())
				}
				return fmt.Errorf("%s exited early (%v)\n%s", p.cmd.Path, p.cmd.ProcessState, env.Tail())
			default:
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// servingPKI makes the API server's CA and certificate with the authtest
// helpers, which want a testing.TB: setupTB turns their Fatalf into an
// error.
func servingPKI() (ca *authtest.CA, leaf *authtest.Leaf, keyPEM []byte, err error) {
	tb := &setupTB{}
	defer func() {
		if r := recover(); r != nil {
			if tb.err == nil {
				panic(r)
			}
			err = tb.err
		}
	}()
	ca = authtest.NewRootCA(tb, "mqttauth test kube CA")
	leaf = ca.Leaf(tb, "kube-apiserver", authtest.WithIPs(net.IPv4(127, 0, 0, 1)), authtest.WithDNSNames("localhost"),
		authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
	keyPEM = authtest.KeyPEM(tb, leaf.Key)
	return ca, leaf, keyPEM, nil
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

// syncBuffer is a process log, written by the exec package's copier and
// read by Tail.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Tail returns the last lines of the processes' logs, for failure messages.
func (e *Env) Tail() string {
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

// Stop kills the processes and removes the scratch directory.
func (e *Env) Stop() {
	for i := len(e.procs) - 1; i >= 0; i-- {
		p := e.procs[i]
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	e.procs = nil
	if e.hc != nil {
		e.hc.CloseIdleConnections()
	}
	_ = os.RemoveAll(e.dir)
}

// StatusError is a non-2xx answer of the API server.
type StatusError struct {
	Code int
	Body string
}

func (h *StatusError) Error() string { return fmt.Sprintf("HTTP %d: %s", h.Code, h.Body) }

// Call makes one API call with token (none when empty) and a JSON body (none
// when nil) and returns the answer's body; a non-2xx answer is a
// *StatusError.
func (e *Env) Call(method, path, token string, body any) (string, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return "", err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.URL+path, rd)
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
		return string(b), &StatusError{resp.StatusCode, string(b)}
	}
	return string(b), nil
}

// Admin makes a call as the administrator; 409 Conflict (it already
// exists) counts as success, so set-up steps may run twice.
func (e *Env) Admin(method, path string, body any) error {
	_, err := e.Call(method, path, e.AdminToken, body)
	var hs *StatusError
	if errors.As(err, &hs) && hs.Code == http.StatusConflict {
		return nil
	}
	return err
}

// CreateServiceAccount creates the ServiceAccount default/name with the
// annotations, unless it exists.
func (e *Env) CreateServiceAccount(name string, annotations map[string]string) error {
	return e.Admin(http.MethodPost, "/api/v1/namespaces/"+Namespace+"/serviceaccounts", map[string]any{
		"apiVersion": "v1", "kind": "ServiceAccount",
		"metadata": map[string]any{"name": name, "annotations": annotations},
	})
}

// DeleteServiceAccount deletes the ServiceAccount default/name.
func (e *Env) DeleteServiceAccount(name string) error {
	return e.Admin(http.MethodDelete, "/api/v1/namespaces/"+Namespace+"/serviceaccounts/"+url.PathEscape(name), nil)
}

// BindBroker gives the ServiceAccount default/name what a broker verifying
// tokens needs: the ClusterRole system:auth-delegator (TokenReview) and a
// ClusterRole that gets, lists and watches serviceaccounts and lists and
// watches pods (annotations, local mode's UID check, satauth's watch). The ServiceAccount must exist or be created separately.
func (e *Env) BindBroker(name string) error {
	steps := []struct {
		path string
		body any
	}{
		{"/apis/rbac.authorization.k8s.io/v1/clusterroles", map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
			"metadata": map[string]any{"name": "mqttauth-sa-reader"},
			"rules": []any{
				map[string]any{"apiGroups": []string{""}, "resources": []string{"serviceaccounts"}, "verbs": []string{"get", "list", "watch"}},
				map[string]any{"apiGroups": []string{""}, "resources": []string{"pods"}, "verbs": []string{"list", "watch"}},
			},
		}},
		{"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding(name+"-auth-delegator", name, "system:auth-delegator")},
		{"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding(name+"-sa-reader", name, "mqttauth-sa-reader")},
	}
	for _, s := range steps {
		if err := e.Admin(http.MethodPost, s.path, s.body); err != nil {
			return fmt.Errorf("POST %s: %w", s.path, err)
		}
	}
	return nil
}

func binding(name, sa, role string) map[string]any {
	return map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
		"metadata": map[string]any{"name": name},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
		"subjects": []any{map[string]any{"kind": "ServiceAccount", "name": sa, "namespace": Namespace}},
	}
}

// Token mints a token for default/name with the TokenRequest API, for the
// audiences (nil: the API server's own audience) and a lifetime of seconds
// (600 at least).
func (e *Env) Token(tb testing.TB, name string, audiences []string, seconds int) string {
	tb.Helper()
	spec := map[string]any{"expirationSeconds": seconds}
	if audiences != nil {
		spec["audiences"] = audiences
	}
	body, err := e.Call(http.MethodPost, "/api/v1/namespaces/"+Namespace+"/serviceaccounts/"+url.PathEscape(name)+"/token", e.AdminToken, map[string]any{
		"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec,
	})
	if err != nil {
		tb.Fatalf("kubetest: TokenRequest for %s: %v", name, err)
	}
	var out struct {
		Status struct {
			Token string `json:"token"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil || out.Status.Token == "" {
		tb.Fatalf("kubetest: TokenRequest for %s: no token in the answer (%v)", name, err)
	}
	return out.Status.Token
}

// TokenFile mints a token as Token does and writes it to a new file in a
// temporary directory of tb, whose path it returns: a broker's TokenFile.
func (e *Env) TokenFile(tb testing.TB, name string, audiences []string, seconds int) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "token")
	if err := os.WriteFile(p, []byte(e.Token(tb, name, audiences, seconds)), 0o600); err != nil {
		tb.Fatalf("kubetest: %v", err)
	}
	return p
}

// AnnotateServiceAccount sets the annotations of the ServiceAccount
// default/name (a JSON merge patch: a nil value removes one).
func (e *Env) AnnotateServiceAccount(name string, annotations map[string]*string) error {
	return e.patch("/api/v1/namespaces/"+Namespace+"/serviceaccounts/"+url.PathEscape(name),
		map[string]any{"metadata": map[string]any{"annotations": annotations}})
}

func (e *Env) patch(path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPatch, e.URL+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/merge-patch+json")
	req.Header.Set("Authorization", "Bearer "+e.AdminToken)
	resp, err := e.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return &StatusError{resp.StatusCode, string(out)}
	}
	return nil
}

// CreatePod creates the pod default/name running as the ServiceAccount
// sa and returns its UID. No scheduler or kubelet runs: the pod object
// exists, which is what bound tokens need.
func (e *Env) CreatePod(name, sa string) (uid string, err error) {
	body, err := e.Call(http.MethodPost, "/api/v1/namespaces/"+Namespace+"/pods", e.AdminToken, map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{
			"serviceAccountName":           sa,
			"automountServiceAccountToken": false,
			"containers":                   []any{map[string]any{"name": "c", "image": "example.invalid/none"}},
		},
	})
	if err != nil {
		return "", err
	}
	var out struct {
		Metadata struct {
			UID string `json:"uid"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		return "", err
	}
	return out.Metadata.UID, nil
}

// DeletePod deletes the pod default/name at once (grace period 0).
func (e *Env) DeletePod(name string) error {
	_, err := e.Call(http.MethodDelete, "/api/v1/namespaces/"+Namespace+"/pods/"+url.PathEscape(name)+"?gracePeriodSeconds=0", e.AdminToken, nil)
	return err
}

// PodToken mints a token for default/sa bound to the pod name/uid (as the
// kubelet projects it), for the audiences and a lifetime of seconds.
func (e *Env) PodToken(tb testing.TB, sa, pod, uid string, audiences []string, seconds int) string {
	tb.Helper()
	body, err := e.Call(http.MethodPost, "/api/v1/namespaces/"+Namespace+"/serviceaccounts/"+url.PathEscape(sa)+"/token", e.AdminToken, map[string]any{
		"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
		"spec": map[string]any{
			"audiences": audiences, "expirationSeconds": seconds,
			"boundObjectRef": map[string]any{"kind": "Pod", "apiVersion": "v1", "name": pod, "uid": uid},
		},
	})
	if err != nil {
		tb.Fatalf("kubetest: TokenRequest for %s bound to pod %s: %v", sa, pod, err)
	}
	var out struct {
		Status struct {
			Token string `json:"token"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil || out.Status.Token == "" {
		tb.Fatalf("kubetest: TokenRequest for %s bound to pod %s: no token in the answer (%v)", sa, pod, err)
	}
	return out.Status.Token
}
