package aioconfig

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mqttauth/mqttauth/internal/kubeapi"
)

// Group is the API group of the Azure IoT Operations broker resources.
const Group = "mqttbroker.iotoperations.azure.com"

// The resources a [Cluster] lists and watches, in the API's plural form.
const (
	ResourceListeners       = "brokerlisteners"
	ResourceAuthentications = "brokerauthentications"
	ResourceAuthorizations  = "brokerauthorizations"
)

// Errors of the Kubernetes source, for errors.Is.
var (
	// ErrUnavailable means the Kubernetes API could not be asked: a
	// connection error, a timeout, a 5xx answer.
	ErrUnavailable = errors.New("aioconfig: Kubernetes API unavailable")
	// ErrForbidden means the identity lacks an RBAC permission
	// ([ClusterPermissions]).
	ErrForbidden = errors.New("aioconfig: the Kubernetes API refused the broker's identity (RBAC)")
)

// APIError is an unexpected answer of the Kubernetes API. It unwraps to
// ErrForbidden for 401 and 403 and to ErrUnavailable otherwise.
type APIError struct {
	Op         string // "list brokerauthorizations"
	StatusCode int
	Message    string
}

// Error names the call and the status.
func (e *APIError) Error() string {
	s := fmt.Sprintf("aioconfig: Kubernetes API %s: %d %s", e.Op, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap returns the sentinel of the status.
func (e *APIError) Unwrap() error {
	if e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden {
		return ErrForbidden
	}
	return ErrUnavailable
}

// DefaultClusterDebounce is how long a [Cluster] waits after a change
// before it rebuilds the configuration, so that `kubectl apply -f` of
// several resources is one reload.
const DefaultClusterDebounce = 50 * time.Millisecond

// ClusterConfig configures a [Cluster]: where the API server is, which
// namespace to read, and what else to read from files.
type ClusterConfig struct {
	// Namespace holds the resources and the ConfigMaps and Secrets they
	// name. Required.
	Namespace string
	// Version is the API version the resources are read in: "v1"
	// (default) or "v1beta1". Either shape of a resource is accepted
	// whatever version serves it: a CustomResourceDefinition without a
	// conversion webhook serves a stored object unchanged in every
	// version.
	Version string
	// APIServer is the API server's URL; empty means the in-cluster
	// service account (KUBERNETES_SERVICE_HOST, its token and CA). CAFile
	// verifies the server, TokenFile holds the bearer token (re-read when
	// it rotates).
	APIServer, CAFile, TokenFile string
	// HTTPClient, when set, is used as is for every call.
	HTTPClient *http.Client
	// RequestTimeout bounds each call (not a watch); zero: 5 s.
	RequestTimeout time.Duration
	// Files are configuration files read with the resources, each time
	// they change: an MqttAuthSettings document, or resources kept in
	// files. Read once, at NewCluster.
	Files []string
	// Edit, when set, changes each configuration read, before it is
	// checked: a program's flag that overrides a port's address. An error
	// makes the configuration invalid.
	Edit func(*Config) error
	// Debounce is the quiet time after a change before the rebuild;
	// zero means DefaultClusterDebounce.
	Debounce time.Duration
	// Logger receives the source's records; nil means slog.Default().
	Logger *slog.Logger
	// Component names the reporter of the Events the source records on
	// invalid resources; empty means "mqttauth".
	Component string
}

// Cluster is the Kubernetes API as a configuration source: it lists and
// watches the BrokerListener, BrokerAuthentication and BrokerAuthorization
// resources of one namespace, and by name the ConfigMaps and Secrets they
// reference, and keeps a [Broker] built from them in step.
//
// What a change does: every change is put in force through
// [Broker.Apply], the one reload path (see its documentation and the
// package's "Live changes"):
//
//   - A BrokerAuthorization's rules are swapped in place and signalled
//     through its watch: the Manager re-checks the live sessions of the
//     ports that use it and disconnects those no longer allowed to
//     Connect; later publishes and subscribes are decided by the new
//     rules.
//   - A referenced ConfigMap or Secret is held in memory: a new CA in a
//     trustedClientCaCert ConfigMap, or a new SCRAM users Secret, updates
//     the method's in-memory source in place; other data rebuilds what
//     reads it.
//   - A change of a BrokerListener or BrokerAuthentication (ports,
//     methods, settings) applies at once: a port added is served, a
//     removed one shut down (DISCONNECT 0x8B), new connections meet the
//     new chain and TLS, and live sessions are re-checked against them.
//   - An invalid resource (a syntax error, an unknown field, a reference
//     to nothing, a rule that does not compile) keeps the last good
//     configuration; the error is logged at Error with the resource's kind,
//     name and field, and recorded as a Warning Event (reason
//     InvalidConfiguration) on the resource, once per distinct error.
//
// Watches resume after the API server ends them, after 410 Gone (by
// listing again) and after the API server restarts (with a backoff of
// 250 ms doubling to 30 s, then a list that catches what changed
// meanwhile): the list+watch loop is the one satauth uses (package
// internal/kubeapi).
type Cluster struct {
	cfg   ClusterConfig
	log   *slog.Logger
	kube  *kubeapi.Client
	files []clusterFile

	mu        sync.Mutex
	resources map[string]map[string]kubeapi.Object // resource -> name -> object
	maps      map[string]*keyed                    // "configmaps/NAME", "secrets/NAME"
	current   *Config                              // the last good configuration
	broker    *Broker
	reported  map[string]string // "Kind/name" -> the last error recorded as an Event
	synced    bool
	checked   time.Time // of the last CheckReady; zero before
	lastErr   error     // of the last CheckReady

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{}
}

// keyed is a followed ConfigMap or Secret: its keys, or that it does not
// exist (its last keys stay in memory). It is never changed once stored.
type keyed struct {
	data   map[string][]byte
	exists bool
}

type clusterFile struct {
	path, dir string
	data      []byte
}

// NewCluster connects to the API server, lists the resources of the
// namespace and the ConfigMaps and Secrets they reference, and checks
// them: an invalid configuration fails here, as a file would (and is
// recorded as an Event on the resource). It does not watch yet: build the
// Broker with [Cluster.Build], which starts the watches. Close it after
// the Broker's Manager.
func NewCluster(ctx context.Context, cfg ClusterConfig) (_ *Cluster, err error) {
	if cfg.Namespace == "" {
		return nil, errors.New("aioconfig: ClusterConfig.Namespace is required")
	}
	switch cfg.Version {
	case "":
		cfg.Version = "v1"
	case "v1", "v1beta1":
	default:
		return nil, fmt.Errorf("aioconfig: ClusterConfig.Version %q: want v1 or v1beta1", cfg.Version)
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultClusterDebounce
	}
	if cfg.Component == "" {
		cfg.Component = "mqttauth"
	}
	k := &Cluster{
		cfg: cfg, log: cfg.Logger,
		resources: map[string]map[string]kubeapi.Object{},
		maps:      map[string]*keyed{},
		reported:  map[string]string{},
		kick:      make(chan struct{}, 1),
	}
	if k.log == nil {
		k.log = slog.Default()
	}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			k.Close()
		}
	}()
	for _, p := range cfg.Files {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("aioconfig: %w", err)
		}
		data, err := os.ReadFile(abs)
		if err != nil {
			return nil, fmt.Errorf("aioconfig: %w", err)
		}
		k.files = append(k.files, clusterFile{path: p, dir: filepath.Dir(abs), data: data})
	}
	k.kube, err = kubeapi.New(kubeapi.Config{
		APIServer: cfg.APIServer, CAFile: cfg.CAFile, TokenFile: cfg.TokenFile,
		HTTPClient: cfg.HTTPClient, RequestTimeout: cfg.RequestTimeout,
		Name: "aioconfig", Unavailable: ErrUnavailable,
		APIError: func(op string, code int, msg string) error { return &APIError{Op: op, StatusCode: code, Message: msg} },
	})
	if err != nil {
		return nil, err
	}
	for _, r := range []string{ResourceListeners, ResourceAuthentications, ResourceAuthorizations} {
		if _, err := k.relist(ctx, r); err != nil {
			return nil, fmt.Errorf("aioconfig: namespace %s: %w", cfg.Namespace, err)
		}
	}
	c, err := k.parse(ctx)
	if err != nil {
		k.report(ctx, err)
		return nil, err
	}
	k.current = c
	k.synced = true
	return k, nil
}

// Config returns the last good configuration read: the one in force
// once the Broker is built (Broker.Apply put it there).
func (k *Cluster) Config() *Config {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.current
}

// Build builds the Broker of the configuration in force (see [Build]),
// with every BrokerAuthorization swappable in place, adds the source's
// start-up and readiness checks (its RBAC, see [ClusterPermissions]) and
// starts the watches. Call it once; closing the Broker stops the watches.
func (k *Cluster) Build(ctx context.Context, opts Options) (*Broker, error) {
	k.mu.Lock()
	if k.broker != nil {
		k.mu.Unlock()
		return nil, errors.New("aioconfig: Cluster.Build called twice")
	}
	c := k.current
	k.mu.Unlock()
	b, err := Build(ctx, c, opts)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.broker = b
	k.mu.Unlock()
	name := "kubernetes (namespace " + k.cfg.Namespace + ")"
	b.startup = append(b.startup, startupCheck{name: name, run: k.CheckReady})
	b.ready = append(b.ready, ReadyCheck{Name: name, Check: k.ready})
	b.onClose(k.stop)
	k.start()
	return b, nil
}

// Close stops the watches. Close the Manager and the Broker first.
func (k *Cluster) Close() {
	k.stop()
	if k.kube != nil {
		k.kube.Close()
	}
}

func (k *Cluster) stop() {
	k.cancel()
	k.wg.Wait()
}

// Permission is one thing the identity of a [Cluster] must be allowed to
// do in its namespace.
type Permission struct {
	Verb     string // "list", "watch", "create"
	Group    string // API group: "" for the core group
	Resource string // "brokerauthorizations", "configmaps", "events"
}

// String returns "list brokerauthorizations.mqttbroker.iotoperations.azure.com"
// or "create events".
func (p Permission) String() string {
	if p.Group == "" {
		return p.Verb + " " + p.Resource
	}
	return p.Verb + " " + p.Resource + "." + p.Group
}

// ClusterPermissions returns what the identity of a [Cluster] needs in
// its namespace (a Role): list and watch the three resources, the
// ConfigMaps and the Secrets (a Role may limit configmaps and secrets to
// the referenced names with resourceNames: the source lists and watches
// each by name, with a metadata.name field selector), and create events.
// deploy/kubernetes/rbac.yaml grants exactly these.
func ClusterPermissions() []Permission {
	var out []Permission
	for _, r := range []string{ResourceListeners, ResourceAuthentications, ResourceAuthorizations} {
		out = append(out, Permission{"list", Group, r}, Permission{"watch", Group, r})
	}
	for _, r := range []string{"configmaps", "secrets"} {
		out = append(out, Permission{"list", "", r}, Permission{"watch", "", r})
	}
	return append(out, Permission{"create", "", "events"})
}

// ErrClusterNotReady is the error of [Cluster.CheckReady] when the
// broker's identity lacks a permission.
var ErrClusterNotReady = errors.New("aioconfig: Kubernetes source not ready")

// CheckReady checks with SelfSubjectAccessReviews that the broker's
// identity has every [ClusterPermissions] in the namespace, and logs one
// line: at Error with what is missing and the Role rules that grant it, or
// at Info that the source is ready.
func (k *Cluster) CheckReady(ctx context.Context) error {
	err := k.checkReady(ctx)
	k.mu.Lock()
	k.lastErr, k.checked = err, time.Now()
	k.mu.Unlock()
	if err != nil {
		k.log.LogAttrs(ctx, slog.LevelError, "aioconfig: Kubernetes source not ready", slog.String("namespace", k.cfg.Namespace), slog.Any("err", err))
		return err
	}
	k.log.LogAttrs(ctx, slog.LevelInfo, "aioconfig: Kubernetes source ready", slog.String("namespace", k.cfg.Namespace))
	return nil
}

func (k *Cluster) checkReady(ctx context.Context) error {
	var perms []kubeapi.Permission
	for _, p := range ClusterPermissions() {
		perms = append(perms, kubeapi.Permission{Verb: p.Verb, Group: p.Group, Resource: p.Resource, Namespace: k.cfg.Namespace})
	}
	missing, err := k.kube.Missing(ctx, perms)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrClusterNotReady, err)
	}
	if len(missing) == 0 {
		return nil
	}
	names := make([]string, len(missing))
	for i, p := range missing {
		names[i] = strings.TrimSuffix(p.String(), " in "+k.cfg.Namespace)
	}
	return fmt.Errorf("%w: the broker's identity may not %s; grant them with a Role in namespace %s bound to it (deploy/kubernetes/rbac.yaml)",
		ErrClusterNotReady, strings.Join(names, ", "), k.cfg.Namespace)
}

// clusterReadyRetry is how often the readiness check runs a failed
// CheckReady again.
const clusterReadyRetry = 30 * time.Second

// ready is the readiness check: the resources were listed and the last
// CheckReady passed. It runs CheckReady when none ran yet, and again at
// most every 30 s while it fails, so that a fixed Role binding makes the
// broker ready without a restart (and the probe does not log at its own
// pace).
func (k *Cluster) ready(ctx context.Context) error {
	k.mu.Lock()
	synced, checked, err := k.synced, k.checked, k.lastErr
	k.mu.Unlock()
	if !synced {
		return ErrNotLoaded
	}
	if checked.IsZero() || (err != nil && time.Since(checked) >= clusterReadyRetry) {
		return k.CheckReady(ctx)
	}
	return err
}
