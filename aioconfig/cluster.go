package aioconfig

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/internal/kubeapi"
	"github.com/mqttauth/mqttauth/truststore"
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
	// Dir is where the ConfigMaps and Secrets the resources name are
	// kept as a pod sees them mounted (Dir/configmaps/NAME/KEY,
	// Dir/secrets/NAME/KEY, mode 0600 in 0700 directories), so that the
	// watched sources (truststores, SCRAM users) reload them as they do
	// mounted volumes. Empty: a new temporary directory, removed by
	// Close. In a pod with a read-only root filesystem, an emptyDir
	// volume with medium Memory.
	Dir string
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
// What a change does:
//
//   - A BrokerAuthorization's rules are swapped in place and signalled
//     through the Broker's watch of that policy (auth.Notifier, the one
//     reload path): the Manager re-checks the live sessions of the ports
//     that use it and disconnects those no longer allowed to Connect;
//     later publishes and subscribes are decided by the new rules.
//   - A referenced ConfigMap or Secret is rewritten in Dir, where the
//     file-backed sources watch it as they watch a mounted volume: a new
//     CA in a trustedClientCaCert ConfigMap is trusted after the
//     truststore's reload, and sessions it no longer trusts are
//     disconnected.
//   - A change of a BrokerListener or BrokerAuthentication (ports,
//     methods, settings) needs a restart: it is validated, logged at Warn
//     and recorded as an Event (reason RestartRequired) on the resource,
//     and the running configuration is kept.
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
	dir   string
	files []clusterFile

	mu        sync.Mutex
	resources map[string]map[string]kubeapi.Object // resource -> name -> object
	maps      map[string]*keyed                    // "configmaps/NAME", "secrets/NAME"
	current   *Config                              // the last good configuration
	structure []byte                               // its listeners and authentications, to tell a restart
	broker    *Broker
	reported  map[string]string // "Kind/name" -> the last error recorded as an Event
	restart   string            // the last RestartRequired recorded
	synced    bool
	checked   time.Time // of the last CheckReady; zero before
	lastErr   error     // of the last CheckReady

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{}
	ownDir bool
}

// keyed is a followed ConfigMap or Secret: its keys, or that it does not
// exist (its last keys stay on disk).
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
	if k.dir = cfg.Dir; k.dir == "" {
		if k.dir, err = os.MkdirTemp("", "mqttauth-cluster-"); err != nil {
			return nil, fmt.Errorf("aioconfig: %w", err)
		}
		k.ownDir = true
	}
	if k.dir, err = filepath.Abs(k.dir); err != nil {
		return nil, fmt.Errorf("aioconfig: %w", err)
	}
	for _, sub := range []string{"configmaps", "secrets"} {
		if err := os.MkdirAll(filepath.Join(k.dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("aioconfig: %w", err)
		}
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
	k.current, k.structure = c, structure(c)
	k.synced = true
	return k, nil
}

// Config returns the last good configuration read. Its policies are in
// force; its ports and methods are those the Broker was built with unless
// a change since needs a restart.
func (k *Cluster) Config() *Config {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.current
}

// Dir returns where the ConfigMaps and Secrets are kept.
func (k *Cluster) Dir() string { return k.dir }

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

// Close stops the watches and removes the temporary directory NewCluster
// made. Close the Manager and the Broker first.
func (k *Cluster) Close() {
	k.stop()
	if k.kube != nil {
		k.kube.Close()
	}
	if k.ownDir {
		_ = os.RemoveAll(k.dir)
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
	if checked.IsZero() || (err != nil && time.Since(checked) >= readyRetry) {
		return k.CheckReady(ctx)
	}
	return err
}

// path is the collection path of a resource of the namespace, with an
// optional field selector.
func (k *Cluster) path(resource, name string) string {
	ns := url.PathEscape(k.cfg.Namespace)
	p := "/apis/" + Group + "/" + k.cfg.Version + "/namespaces/" + ns + "/" + resource
	if resource == "configmaps" || resource == "secrets" {
		p = "/api/v1/namespaces/" + ns + "/" + resource
	}
	if name != "" {
		p += "?" + url.Values{"fieldSelector": {"metadata.name=" + name}}.Encode()
	}
	return p
}

// start starts a watch per resource and the rebuild loop.
func (k *Cluster) start() {
	for _, r := range []string{ResourceListeners, ResourceAuthentications, ResourceAuthorizations} {
		k.follow(r, "")
	}
	k.mu.Lock()
	names := make([]string, 0, len(k.maps))
	for key := range k.maps {
		names = append(names, key)
	}
	k.mu.Unlock()
	for _, key := range names {
		r, name, _ := strings.Cut(key, "/")
		k.follow(r, name)
	}
	k.wg.Go(k.rebuildLoop)
}

// follow runs the list+watch loop of a resource (name empty) or of one
// ConfigMap or Secret.
func (k *Cluster) follow(resource, name string) {
	ctx := k.ctx
	f := kubeapi.Follow{
		Client: k.kube, Op: "watch " + resource, Path: k.path(resource, name),
		Failed: func(err error, backoff time.Duration) {
			level := slog.LevelWarn
			if errors.Is(err, ErrForbidden) {
				level = slog.LevelError
			}
			k.log.LogAttrs(ctx, level, "aioconfig: watch failed; retrying", slog.String("namespace", k.cfg.Namespace),
				slog.String("resource", resource), slog.String("name", name), slog.Duration("backoff", backoff), slog.Any("err", err))
		},
		Resumed: func() {
			k.log.LogAttrs(ctx, slog.LevelInfo, "aioconfig: watch resumed", slog.String("namespace", k.cfg.Namespace),
				slog.String("resource", resource), slog.String("name", name))
		},
	}
	if name == "" {
		f.Relist = func(ctx context.Context) (string, error) { return k.relist(ctx, resource) }
		f.Event = func(typ string, o kubeapi.Object) { k.resourceEvent(resource, typ, o) }
	} else {
		f.Relist = func(ctx context.Context) (string, error) { return k.relistKeyed(ctx, resource, name) }
		f.Event = func(typ string, o kubeapi.Object) { k.keyedEvent(resource, name, typ, o) }
	}
	k.wg.Go(func() { f.Run(ctx) })
}

// relist lists a resource and replaces what is known of it.
func (k *Cluster) relist(ctx context.Context, resource string) (string, error) {
	seen := map[string]kubeapi.Object{}
	rv, err := k.kube.List(ctx, "list "+resource, k.path(resource, ""), "", func(o kubeapi.Object) { seen[o.Meta.Name] = o })
	if err != nil {
		return "", err
	}
	k.mu.Lock()
	changed := !sameObjects(k.resources[resource], seen)
	k.resources[resource] = seen
	k.mu.Unlock()
	if changed {
		k.trigger()
	}
	return rv, nil
}

func sameObjects(a, b map[string]kubeapi.Object) bool {
	if len(a) != len(b) {
		return false
	}
	for n, o := range a {
		if p, ok := b[n]; !ok || p.Meta.ResourceVersion != o.Meta.ResourceVersion {
			return false
		}
	}
	return true
}

func (k *Cluster) resourceEvent(resource, typ string, o kubeapi.Object) {
	k.mu.Lock()
	if k.resources[resource] == nil {
		k.resources[resource] = map[string]kubeapi.Object{}
	}
	if typ == "DELETED" {
		delete(k.resources[resource], o.Meta.Name)
	} else {
		k.resources[resource][o.Meta.Name] = o
	}
	k.mu.Unlock()
	k.trigger()
}

// relistKeyed lists one ConfigMap or Secret by name.
func (k *Cluster) relistKeyed(ctx context.Context, resource, name string) (string, error) {
	var found *kubeapi.Object
	rv, err := k.kube.List(ctx, "list "+resource, k.path(resource, name), "", func(o kubeapi.Object) {
		if o.Meta.Name == name {
			found = &o
		}
	})
	if err != nil {
		return "", err
	}
	typ := "DELETED"
	var o kubeapi.Object
	if found != nil {
		typ, o = "ADDED", *found
	}
	k.keyedEvent(resource, name, typ, o)
	return rv, nil
}

// keyedEvent stores a ConfigMap or Secret and writes it to the directory.
func (k *Cluster) keyedEvent(resource, name, typ string, o kubeapi.Object) {
	if o.Meta.Name != "" && o.Meta.Name != name {
		return
	}
	key := resource + "/" + name
	kd := &keyed{exists: typ != "DELETED"}
	if kd.exists {
		var err error
		if kd.data, err = decodeData(resource, o.Raw); err != nil {
			k.log.LogAttrs(k.ctx, slog.LevelError, "aioconfig: undecodable object; keeping the last version", slog.String("resource", resource), slog.String("name", name), slog.Any("err", err))
			return
		}
	}
	k.mu.Lock()
	prev := k.maps[key]
	if prev != nil && prev.exists == kd.exists && maps2Equal(prev.data, kd.data) {
		k.maps[key] = kd
		k.mu.Unlock()
		return
	}
	k.maps[key] = kd
	var err error
	if kd.exists {
		// A deleted object's files stay: the sources keep their last good
		// content while the reference is reported as missing.
		err = k.writeKeyed(resource, name, kd)
	}
	k.mu.Unlock()
	if err != nil {
		k.log.LogAttrs(k.ctx, slog.LevelError, "aioconfig: writing a ConfigMap or Secret", slog.String("resource", resource), slog.String("name", name), slog.Any("err", err))
	}
	k.trigger()
}

func maps2Equal(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for n, v := range a {
		if w, ok := b[n]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// decodeData returns the keys of a ConfigMap (data and binaryData) or a
// Secret (data, base64).
func decodeData(resource string, raw json.RawMessage) (map[string][]byte, error) {
	var obj struct {
		Data       map[string]string `json:"data"`
		BinaryData map[string]string `json:"binaryData"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for key, v := range obj.Data {
		if resource == "secrets" {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return nil, fmt.Errorf("data.%s: %w", key, err)
			}
			out[key] = b
		} else {
			out[key] = []byte(v)
		}
	}
	for key, v := range obj.BinaryData {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("binaryData.%s: %w", key, err)
		}
		out[key] = b
	}
	return out, nil
}

// writeKeyed makes Dir/RESOURCE/NAME hold exactly the keys of kd, each
// written to a dot-file and renamed into place, so that a watcher never
// reads half a file (dot-files are skipped in CA directories). With
// kd.exists false it empties the directory; keyedEvent does not call it
// for a deleted object, whose last content stays in force while the
// reference is reported missing.
func (k *Cluster) writeKeyed(resource, name string, kd *keyed) error {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return fmt.Errorf("invalid name %q", name)
	}
	dir := filepath.Join(k.dir, resource, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, keep := kd.data[e.Name()]; !keep || !kd.exists {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	keys := make([]string, 0, len(kd.data))
	for key := range kd.data {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	for _, key := range keys {
		if strings.ContainsAny(key, `/\`) || strings.HasPrefix(key, ".") {
			continue // not a valid key; Kubernetes refuses them anyway
		}
		tmp := filepath.Join(dir, ".."+key+".tmp")
		if err := os.WriteFile(tmp, kd.data[key], 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, key)); err != nil {
			return err
		}
	}
	return nil
}

// trigger asks the rebuild loop for a rebuild.
func (k *Cluster) trigger() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// rebuildLoop rebuilds after each burst of changes.
func (k *Cluster) rebuildLoop() {
	for {
		select {
		case <-k.ctx.Done():
			return
		case <-k.kick:
		}
		t := time.NewTimer(k.cfg.Debounce)
		select {
		case <-k.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		k.rebuild(k.ctx)
	}
}

// rebuild parses what the API holds now and applies it: the policies in
// place, or an Event saying why not.
func (k *Cluster) rebuild(ctx context.Context) {
	c, err := k.parse(ctx)
	if err != nil {
		k.log.LogAttrs(ctx, slog.LevelError, "aioconfig: invalid configuration in the cluster; keeping the last good one", errAttrs(err)...)
		k.report(ctx, err)
		return
	}
	k.mu.Lock()
	prev, b := k.current, k.broker
	k.current = c
	s := structure(c)
	restart := !bytes.Equal(s, k.structure)
	reported := k.reported
	k.reported = map[string]string{}
	k.mu.Unlock()
	for key := range reported {
		kind, name, _ := strings.Cut(key, "/")
		k.log.LogAttrs(ctx, slog.LevelInfo, "aioconfig: resource valid again", slog.String("kind", kind), slog.String("name", name))
	}
	applied := 0
	if b != nil {
		for _, a := range c.Authorizations {
			lp := b.live[a.Name]
			if lp == nil {
				continue
			}
			if old := prev.authorization(a.Name); old != nil && bytes.Equal(old.Policy, a.Policy) {
				continue
			}
			pol, err := abac.Parse(a.Policy) // compiled by parse already
			if err != nil {
				continue
			}
			lp.set(pol)
			applied++
			k.log.LogAttrs(ctx, slog.LevelInfo, "aioconfig: BrokerAuthorization applied", slog.String("namespace", k.cfg.Namespace),
				slog.String("name", a.Name), slog.Int("rules", a.Rules))
		}
	}
	if restart {
		k.restartRequired(ctx, prev, c, string(s))
	}
}

// restartRequired logs and records a structural change the running
// Broker cannot take in place.
func (k *Cluster) restartRequired(ctx context.Context, prev, c *Config, s string) {
	k.mu.Lock()
	if k.restart == s {
		k.mu.Unlock()
		return
	}
	k.restart = s
	k.mu.Unlock()
	kind, name := changedResource(prev, c)
	k.log.LogAttrs(ctx, slog.LevelWarn, "aioconfig: a BrokerListener or BrokerAuthentication changed; restart to apply it (the running configuration is kept)",
		slog.String("namespace", k.cfg.Namespace), slog.String("kind", kind), slog.String("name", name))
	k.event(ctx, kind, name, "Warning", "RestartRequired", "mqttauth runs the previous version: a change of ports or authentication methods applies at the next restart")
}

// changedResource names the first listener or authentication that
// differs between a and b.
func changedResource(a, b *Config) (kind, name string) {
	for _, l := range b.Listeners {
		var o *Listener
		for _, p := range a.Listeners {
			if p.Name == l.Name {
				o = p
			}
		}
		if o == nil || !jsonEqual(o.Ports, l.Ports) {
			return KindListener, l.Name
		}
	}
	for _, x := range b.Authentications {
		o := a.authentication(x.Name)
		if o == nil || !jsonEqual(o.Methods, x.Methods) {
			return KindAuthentication, x.Name
		}
	}
	if len(a.Listeners) > len(b.Listeners) {
		return KindListener, a.Listeners[len(a.Listeners)-1].Name
	}
	if len(a.Authentications) > 0 {
		return KindAuthentication, a.Authentications[0].Name
	}
	return KindListener, ""
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// structure is what of c needs a restart when it changes: the listeners
// and the authentications.
func structure(c *Config) []byte {
	type l struct {
		Name  string
		Ports []PortSpec
	}
	type a struct {
		Name    string
		Methods []Method
	}
	var s struct {
		L []l
		A []a
	}
	for _, x := range c.Listeners {
		s.L = append(s.L, l{x.Name, x.Ports})
	}
	for _, x := range c.Authentications {
		s.A = append(s.A, a{x.Name, x.Methods})
	}
	b, _ := json.Marshal(s)
	return b
}

// parse builds a Config from the files and the resources as the API
// holds them now, fetches the ConfigMaps and Secrets it references that
// are not followed yet (and follows them, once the watches run), and
// checks it: references resolve, policies compile.
func (k *Cluster) parse(ctx context.Context) (*Config, error) {
	c, err := k.assemble()
	if err != nil {
		return nil, err
	}
	refs := references(c)
	for _, r := range refs {
		key := r.resource + "/" + r.name
		k.mu.Lock()
		_, known := k.maps[key]
		running := k.broker != nil
		k.mu.Unlock()
		if known {
			continue
		}
		if _, err := k.relistKeyed(ctx, r.resource, r.name); err != nil {
			return nil, fmt.Errorf("aioconfig: namespace %s: %w", k.cfg.Namespace, err)
		}
		if running {
			k.follow(r.resource, r.name)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, r := range refs {
		kd := k.maps[r.resource+"/"+r.name]
		if kd == nil || !kd.exists {
			what := "ConfigMap"
			if r.resource == "secrets" {
				what = "Secret"
			}
			return nil, &Error{Source: "namespace " + k.cfg.Namespace, Kind: r.kind, Name: r.owner, Field: r.field, Value: r.name,
				Err: ErrNotFound, Hint: what + " " + r.name + " does not exist in namespace " + k.cfg.Namespace}
		}
		for _, key := range r.keys {
			if _, ok := kd.data[key]; !ok {
				return nil, &Error{Source: "namespace " + k.cfg.Namespace, Kind: r.kind, Name: r.owner, Field: r.field, Value: r.name,
					Err: ErrNotFound, Hint: "the Secret has no key " + key}
			}
		}
		if r.check == nil {
			continue
		}
		keys := make([]string, 0, len(kd.data))
		for key := range kd.data {
			keys = append(keys, key)
		}
		slices.Sort(keys)
		for _, key := range keys {
			if err := r.check(kd.data[key]); err != nil {
				return nil, &Error{Source: "namespace " + k.cfg.Namespace, Kind: r.kind, Name: r.owner, Field: r.field, Value: r.name,
					Err: fmt.Errorf("%w: key %s of ConfigMap %s: %w", ErrInvalidValue, key, r.name, err)}
			}
		}
	}
	for _, a := range c.Authorizations {
		if _, err := abac.Parse(a.Policy); err != nil {
			field := ""
			var pe *abac.PolicyError
			if errors.As(err, &pe) {
				field = "spec.authorizationPolicies." + pe.Location()
			}
			return nil, &Error{Source: "namespace " + k.cfg.Namespace, Kind: KindAuthorization, Name: a.Name, Field: field, Err: fmt.Errorf("%w: %w", ErrInvalidValue, err)}
		}
	}
	return c, nil
}

// assemble parses the files and the resources into a new Config whose
// ConfigMaps and Secrets resolve in Dir.
func (k *Cluster) assemble() (*Config, error) {
	c := &Config{dir: k.dir, live: true}
	if len(k.files) > 0 {
		c.dir = k.files[0].dir
	}
	for _, f := range k.files {
		if err := c.add(f.data, f.path, f.dir); err != nil {
			return nil, err
		}
	}
	k.mu.Lock()
	var objs []kubeapi.Object
	var kinds []string
	for _, r := range []struct{ resource, kind string }{
		{ResourceListeners, KindListener}, {ResourceAuthentications, KindAuthentication}, {ResourceAuthorizations, KindAuthorization},
	} {
		names := make([]string, 0, len(k.resources[r.resource]))
		for n := range k.resources[r.resource] {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			objs = append(objs, k.resources[r.resource][n])
			kinds = append(kinds, r.kind)
		}
	}
	k.mu.Unlock()
	source := "namespace " + k.cfg.Namespace
	for i, o := range objs {
		doc, err := resourceDoc(o.Raw, kinds[i])
		d := docRef{source: source, kind: kinds[i], name: o.Meta.Name, dir: c.dir}
		if err != nil {
			return nil, d.err("", "", fmt.Errorf("%w: %v", ErrSyntax, err), "")
		}
		if err := c.addDoc(doc, d); err != nil {
			return nil, err
		}
	}
	c.Settings.ConfigMapDir = filepath.Join(k.dir, "configmaps")
	c.Settings.SecretDir = filepath.Join(k.dir, "secrets")
	return c, nil
}

// resourceDoc is the document the loader reads for an object of the API:
// its kind, name and spec. The apiVersion is left out: a
// CustomResourceDefinition without a conversion webhook serves a stored
// object unchanged in every version, so the shape, not the version,
// tells v1 from v1beta1.
func resourceDoc(raw json.RawMessage, kind string) ([]byte, error) {
	var obj struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	doc := map[string]any{"kind": kind, "metadata": map[string]string{"name": obj.Metadata.Name}}
	if obj.Spec != nil {
		doc["spec"] = obj.Spec
	}
	return json.Marshal(doc)
}

// reference is a ConfigMap or Secret a resource names.
type reference struct {
	resource, name     string // "configmaps", NAME
	kind, owner, field string
	keys               []string           // keys that must exist
	check              func([]byte) error // each key's content, when set
}

// The checks of ConfigMaps of CA certificates and of CRLs: what the
// truststore would refuse to load is reported on the resource that names
// the ConfigMap (the truststore itself keeps its last good set).
func checkCerts(b []byte) error { _, err := truststore.ParseCertificates(b); return err }
func checkCRLs(b []byte) error  { _, err := truststore.ParseCRLs(b); return err }

// references lists the ConfigMaps and Secrets c names (values that are
// paths are files, not references).
func references(c *Config) []reference {
	var out []reference
	seen := map[string]bool{}
	var check func([]byte) error
	add := func(resource, name, kind, owner, field string, keys ...string) {
		if name == "" || strings.ContainsAny(name, `/\`) || seen[resource+"/"+name+field] {
			return
		}
		seen[resource+"/"+name+field] = true
		out = append(out, reference{resource: resource, name: name, kind: kind, owner: owner, field: field, keys: keys, check: check})
	}
	certs := func(resource, name, kind, owner, field string) {
		check = checkCerts
		add(resource, name, kind, owner, field)
		check = nil
	}
	for _, a := range c.Authentications {
		for i, m := range a.Methods {
			at := fmt.Sprintf("spec.authenticationMethods[%d].%s", i, settingsField(m.Method, a.API))
			switch {
			case m.X509 != nil:
				certs("configmaps", m.X509.TrustedClientCaCert, KindAuthentication, a.Name, at+".trustedClientCaCert")
				check = checkCRLs
				for j, crl := range m.X509.CRLs {
					add("configmaps", crl, KindAuthentication, a.Name, fmt.Sprintf("%s.crls[%d]", at, j))
				}
				check = nil
				if m.X509.Attributes != nil {
					add("secrets", m.X509.Attributes.SecretName, KindAuthentication, a.Name, at+".attributes.secretName")
				}
			case m.Custom != nil:
				certs("configmaps", cmpOr(m.Custom.CACert, m.Custom.CACertConfigMap), KindAuthentication, a.Name, at+".caCert")
				if x := m.Custom.Auth; x != nil && x.X509 != nil {
					add("secrets", cmpOr(x.X509.SecretRef, x.X509.SecretName), KindAuthentication, a.Name, at+".auth.x509", "tls.crt", "tls.key")
				}
			case m.SCRAM != nil:
				add("secrets", m.SCRAM.UsersFile, KindAuthentication, a.Name, at+".usersFile")
			case m.JWT != nil:
				certs("configmaps", m.JWT.CACert, KindAuthentication, a.Name, at+".caCert")
			}
		}
	}
	for _, l := range c.Listeners {
		for i, p := range l.Ports {
			if p.TLS != nil && p.TLS.Manual != nil {
				add("secrets", p.TLS.Manual.SecretRef, KindListener, l.Name, fmt.Sprintf("spec.ports[%d].tls.manual.secretRef", i), "tls.crt", "tls.key")
			}
		}
	}
	return out
}

// errAttrs are the log attributes of a configuration error: the
// resource's kind, name and field when it is an *Error.
func errAttrs(err error) []slog.Attr {
	var e *Error
	if errors.As(err, &e) {
		return []slog.Attr{slog.String("kind", e.Kind), slog.String("name", e.Name), slog.String("field", e.Field), slog.Any("err", err)}
	}
	return []slog.Attr{slog.Any("err", err)}
}

// report records a configuration error as a Warning Event on the
// resource it is about, once per distinct error of that resource.
func (k *Cluster) report(ctx context.Context, err error) {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, err := range errs {
		var e *Error
		if !errors.As(err, &e) || e.Kind == "" || e.Name == "" {
			continue
		}
		key := e.Kind + "/" + e.Name
		msg := err.Error()
		k.mu.Lock()
		dup := k.reported[key] == msg
		k.reported[key] = msg
		k.mu.Unlock()
		if !dup {
			k.event(ctx, e.Kind, e.Name, "Warning", "InvalidConfiguration", msg+"; the last good configuration is kept")
		}
	}
}

// event records an Event on a resource of the namespace; a failure is
// logged.
func (k *Cluster) event(ctx context.Context, kind, name, typ, reason, msg string) {
	ref := kubeapi.ObjectRef{APIVersion: Group + "/" + k.cfg.Version, Kind: kind, Namespace: k.cfg.Namespace, Name: name}
	k.mu.Lock()
	for r, kd := range map[string]string{ResourceListeners: KindListener, ResourceAuthentications: KindAuthentication, ResourceAuthorizations: KindAuthorization} {
		if kd == kind {
			if o, ok := k.resources[r][name]; ok {
				ref.UID = o.Meta.UID
			}
		}
	}
	k.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := k.kube.CreateEvent(ctx, kubeapi.Event{Object: ref, Type: typ, Reason: reason, Message: msg, Component: k.cfg.Component})
	if err != nil {
		k.log.LogAttrs(ctx, slog.LevelWarn, "aioconfig: recording an Event failed", slog.String("kind", kind), slog.String("name", name), slog.String("reason", reason), slog.Any("err", err))
	}
}
