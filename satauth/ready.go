package satauth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/mqttauth/mqttauth/internal/kubeapi"
)

// ErrNotReady means the broker cannot verify tokens as configured: its own
// token is refused or its identity lacks a permission. [Authenticator.Ready]
// and [Authenticator.CheckReady] return it, wrapped with what is missing.
var ErrNotReady = errors.New("satauth: not ready")

// Permission is one thing the broker's identity must be allowed to do.
type Permission struct {
	Verb     string // "create", "get", "list", "watch"
	Group    string // API group: "" for the core group
	Resource string // "tokenreviews", "serviceaccounts", "pods"
}

// String returns "create tokenreviews.authentication.k8s.io" or
// "get serviceaccounts".
func (p Permission) String() string {
	if p.Group == "" {
		return p.Verb + " " + p.Resource
	}
	return p.Verb + " " + p.Resource + "." + p.Group
}

// ReadinessError says why the Authenticator is not ready. It unwraps to
// ErrNotReady and, when the API refused or could not answer, to that
// error (ErrBrokerUnauthorized, ErrUnavailable).
type ReadinessError struct {
	// Missing are the permissions the broker's identity lacks,
	// cluster-wide.
	Missing []Permission
	// Err is why the check itself failed (the broker's token refused, the
	// API unreachable); nil when the check ran.
	Err error
}

// Error names what is missing and the ClusterRole rules that grant it.
func (e *ReadinessError) Error() string {
	if e.Err != nil {
		return "satauth: not ready: " + e.Err.Error()
	}
	names := make([]string, len(e.Missing))
	for i, p := range e.Missing {
		names[i] = p.String()
	}
	return "satauth: not ready: the broker's identity may not " + strings.Join(names, ", ") +
		"; add to a ClusterRole bound to it: " + ClusterRoleRules(e.Missing)
}

// Unwrap returns ErrNotReady and the failure of the check, if any.
func (e *ReadinessError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrNotReady, e.Err}
	}
	return []error{ErrNotReady}
}

// ClusterRoleRules renders the rules that grant perms, grouped by API
// group and resource, in the YAML flow style of a ClusterRole's rules:
// `{apiGroups: [""], resources: ["serviceaccounts"], verbs: ["get", "list"]}`.
func ClusterRoleRules(perms []Permission) string {
	type gr struct{ group, resource string }
	var order []gr
	verbs := make(map[gr][]string)
	for _, p := range perms {
		k := gr{p.Group, p.Resource}
		if _, ok := verbs[k]; !ok {
			order = append(order, k)
		}
		verbs[k] = append(verbs[k], `"`+p.Verb+`"`)
	}
	rules := make([]string, len(order))
	for i, k := range order {
		rules[i] = fmt.Sprintf(`{apiGroups: [%q], resources: [%q], verbs: [%s]}`, k.group, k.resource, strings.Join(verbs[k], ", "))
	}
	return strings.Join(rules, ", ")
}

// readiness is the outcome of the last CheckReady.
type readiness struct{ err error }

// Permissions returns what the broker's identity needs for this
// configuration: create tokenreviews (ModeTokenReview), get
// serviceaccounts (attributes, and the deleted-account check), list and
// watch serviceaccounts and pods (the watch). Discovery and the JWKS of
// ModeLocal are allowed to every authenticated identity by default and
// are not listed.
func (a *Authenticator) Permissions() []Permission {
	var out []Permission
	if a.mode == ModeTokenReview {
		out = append(out, Permission{"create", "authentication.k8s.io", "tokenreviews"})
	}
	if !a.noAttrs {
		out = append(out, Permission{"get", "", "serviceaccounts"})
	}
	if a.follow != nil {
		out = append(out,
			Permission{"list", "", "serviceaccounts"}, Permission{"watch", "", "serviceaccounts"},
			Permission{"list", "", "pods"}, Permission{"watch", "", "pods"})
	}
	return out
}

// CheckReady checks, with the API's SelfSubjectAccessReview, that the
// broker's own token is accepted and that its identity has every
// [Authenticator.Permissions] cluster-wide. It logs one line: at Error
// level with what is missing and the ClusterRole rule to add, or at Info
// level that the broker is ready. Call it at start-up, before the
// listeners open, and from a readiness probe if wanted; [Authenticator.Ready]
// returns its last outcome. A *ReadinessError says what is missing.
//
// Permissions granted only per namespace (a Role) are reported missing,
// since the check asks about all namespaces.
func (a *Authenticator) CheckReady(ctx context.Context) error {
	err := a.checkReady(ctx)
	a.ready.Store(&readiness{err: err})
	if err != nil {
		a.log.LogAttrs(ctx, slog.LevelError, "satauth: not ready", slog.String("method", Method), slog.Any("err", err))
		a.retry.start(a)
		return err
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "satauth: ready", slog.String("method", Method), slog.String("mode", a.mode.String()))
	return nil
}

// Ready returns the outcome of the last [Authenticator.CheckReady]: nil when
// it found nothing missing, ErrNotReady before the first check.
func (a *Authenticator) Ready() error {
	r := a.ready.Load()
	if r == nil {
		return fmt.Errorf("%w: CheckReady has not run", ErrNotReady)
	}
	return r.err
}

func (a *Authenticator) checkReady(ctx context.Context) error {
	if a.kube == nil {
		return nil // ModeLocal with a JWKS file and no attributes: no API
	}
	var missing []Permission
	for _, p := range a.Permissions() {
		ok, err := a.kube.canI(ctx, p)
		if err != nil {
			return &ReadinessError{Err: err}
		}
		if !ok {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return &ReadinessError{Missing: missing}
	}
	return nil
}

const opAccessReview = kubeapi.OpAccessReview

// canI asks whether the broker may do p in every namespace.
func (c *kubeClient) canI(ctx context.Context, p Permission) (bool, error) {
	return c.CanI(ctx, kubeapi.Permission{Verb: p.Verb, Group: p.Group, Resource: p.Resource})
}

// readyRetry checks readiness again in the background while it fails
// (Config.ReadyRetry). One goroutine at most, ended by close.
type readyRetry struct {
	every, timeout time.Duration // every < 0: off
	ctx            context.Context
	cancel         context.CancelFunc
	wg             sync.WaitGroup
	mu             sync.Mutex
	running        bool
}

func (r *readyRetry) init(every, timeout time.Duration) {
	r.every, r.timeout = cmp.Or(every, DefaultReadyRetry), cmp.Or(timeout, DefaultRequestTimeout)
	r.ctx, r.cancel = context.WithCancel(context.Background())
}

// start runs the background check unless it runs already, is off, or
// the Authenticator is closed.
func (r *readyRetry) start(a *Authenticator) {
	if r.every < 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running || r.ctx.Err() != nil {
		return
	}
	r.running = true
	r.wg.Add(1)
	go r.loop(a, time.Now())
}

func (r *readyRetry) loop(a *Authenticator, since time.Time) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		r.running = false
		r.mu.Unlock()
	}()
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
		err := a.checkReady(ctx)
		cancel()
		if r.ctx.Err() != nil {
			return
		}
		if cur := a.ready.Load(); cur != nil && cur.err == nil {
			return // a CheckReady passed meanwhile, and logged it
		}
		a.ready.Store(&readiness{err: err})
		if err == nil {
			a.log.LogAttrs(r.ctx, slog.LevelInfo, "satauth: ready", slog.String("method", Method), slog.String("mode", a.mode.String()),
				slog.Duration("not_ready_for", time.Since(since).Round(time.Millisecond)))
			return
		}
	}
}

func (r *readyRetry) close() {
	r.cancel()
	r.wg.Wait()
}
