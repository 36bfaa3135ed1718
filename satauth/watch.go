package satauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/mqttauth/mqttauth/auth"
)

// Timings of the watch. Variables so that tests can shorten them.
var (
	// sweepInterval is how often the live sessions are counted, so that
	// the bindings of ended sessions are forgotten (at the second sweep
	// after they end) and the watches of namespaces no session comes from
	// any more are stopped.
	sweepInterval = 30 * time.Second
	// watchBackoffMin and watchBackoffMax bound the wait before a failed
	// list or watch is tried again; it doubles from the one to the other.
	watchBackoffMin = 250 * time.Millisecond
	watchBackoffMax = 30 * time.Second
	// deadPodTTL is how long a deleted pod's UID is remembered: the
	// longest lifetime the kubelet gives a projected token.
	deadPodTTL = 48 * time.Hour
)

// Resources the watch follows.
const (
	resServiceAccounts = "serviceaccounts"
	resPods            = "pods"
)

// binding is what a live session's principal was verified from: its
// service account (and that account's UID) and the pod its token is bound
// to.
type binding struct {
	ns, name, uid string
	pod, podUID   string
	seq           uint64 // when it was recorded, for the sweep
}

// saState is a service account as the watch last saw it.
type saState struct {
	deleted bool
	uid     string
	attrs   map[string]string
}

// follower follows Kubernetes for the sessions an Authenticator verified:
// it watches the service accounts and pods of the namespaces those
// sessions come from and re-checks them when their account or pod changes.
type follower struct {
	a *Authenticator

	mu       sync.Mutex
	m        *auth.Manager // nil until RecheckOnChange
	ctx      context.Context
	cancel   context.CancelFunc
	seq      uint64
	lastMark uint64 // seq at the previous sweep
	bindings map[*auth.Principal]binding
	accounts map[string]int    // "ns/name" -> bindings naming it
	pods     map[string]int    // "ns/pod" -> bindings naming it
	spaces   map[string]func() // watched namespace -> stop
	// Changes waiting for the re-check goroutine.
	pendingSA  map[string]saState // "ns/name"
	pendingPod map[string]string  // "ns/pod" -> the deleted pod's UID
	kick       chan struct{}
	wg         sync.WaitGroup
	// deadPods are the UIDs of pods the watch saw deleted.
	deadPods *lru[string, struct{}]
	// afterRecheck, when set (tests), is called after each re-check.
	afterRecheck func(auth.RecheckReport)
}

func newFollower(a *Authenticator) *follower {
	return &follower{
		a:          a,
		bindings:   make(map[*auth.Principal]binding),
		accounts:   make(map[string]int),
		pods:       make(map[string]int),
		spaces:     make(map[string]func()),
		pendingSA:  make(map[string]saState),
		pendingPod: make(map[string]string),
		kick:       make(chan struct{}, 1),
		deadPods:   newLRU[string, struct{}](DefaultCacheSize),
	}
}

// RecheckOnChange follows Kubernetes for the live sessions of m whose
// principals this Authenticator verified, until the returned function is
// called (or Close). Call it once, right after auth.NewManager and before
// clients connect: sessions authenticated before it are not followed.
//
// For every namespace that a connected client's service account is in, it
// lists and watches that namespace's ServiceAccounts and Pods (metadata
// only) with the Kubernetes list+watch API; the watch of a namespace starts
// when the first session from it authenticates and stops within two sweeps
// (every 30 s) after the last one has ended. On a change it updates the
// token and account caches at once and re-checks, through
// [auth.Manager.Recheck], the sessions the change concerns:
//
//   - a deleted service account, or one re-created under the same name
//     (another UID), disconnects its sessions (DISCONNECT 0x87, with
//     ErrServiceAccountNotFound in the log);
//   - a deleted pod disconnects the sessions whose token is bound to it
//     (0x87, ErrPodDeleted);
//   - changed annotations give the sessions of that account a new
//     principal with the new attributes ([auth.Session.Update]), which
//     must still be allowed to Connect or the session is disconnected
//     (0x87); later publishes are authorized with the new attributes.
//
// A watch that ends is resumed from its last resourceVersion; one that
// fails (the API server restarts, a network error) is resumed after a
// backoff of 250 ms doubling to 30 s, by listing again (which also
// catches what changed meanwhile); a 410 Gone lists again at once. Failures
// are logged at most once a minute per namespace and resource.
//
// The broker's identity needs list and watch on serviceaccounts and pods
// (see [Authenticator.CheckReady]). With Config.DisableWatch, or when the
// Authenticator needs no API (ModeLocal with a JWKS file and no
// attributes), it does nothing.
func (a *Authenticator) RecheckOnChange(m *auth.Manager) (stop func()) {
	f := a.follow
	if f == nil || m == nil {
		return func() {}
	}
	f.mu.Lock()
	if f.m != nil {
		f.mu.Unlock()
		panic("satauth: RecheckOnChange called twice")
	}
	f.m = m
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.wg.Go(f.recheckLoop)
	f.wg.Go(f.sweepLoop)
	f.mu.Unlock()
	var once sync.Once
	return func() { once.Do(f.stop) }
}

// stop ends every goroutine of the follower and waits for them.
func (f *follower) stop() {
	f.mu.Lock()
	if f.cancel != nil {
		f.cancel()
	}
	f.mu.Unlock()
	f.wg.Wait()
	f.mu.Lock()
	clear(f.bindings)
	clear(f.accounts)
	clear(f.pods)
	clear(f.spaces)
	clear(f.pendingSA)
	clear(f.pendingPod)
	f.mu.Unlock()
}

// track records the binding of a principal that just passed, and starts
// watching its namespace if no watch runs there.
func (f *follower) track(p *auth.Principal, id identity) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil || f.ctx.Err() != nil {
		return
	}
	f.addLocked(p, binding{ns: id.namespace, name: id.name, uid: id.uid, pod: id.pod, podUID: id.podUID})
}

func (f *follower) addLocked(p *auth.Principal, b binding) {
	if _, ok := f.bindings[p]; ok {
		return
	}
	f.seq++
	b.seq = f.seq
	f.bindings[p] = b
	f.accounts[b.ns+"/"+b.name]++
	if b.pod != "" {
		f.pods[b.ns+"/"+b.pod]++
	}
	if _, ok := f.spaces[b.ns]; !ok {
		f.startLocked(b.ns)
	}
}

func (f *follower) removeLocked(p *auth.Principal, b binding) {
	delete(f.bindings, p)
	decr(f.accounts, b.ns+"/"+b.name)
	if b.pod != "" {
		decr(f.pods, b.ns+"/"+b.pod)
	}
}

func decr(m map[string]int, k string) {
	if m[k] <= 1 {
		delete(m, k)
	} else {
		m[k]--
	}
}

// startLocked starts the watches of namespace ns.
func (f *follower) startLocked(ns string) {
	ctx, cancel := context.WithCancel(f.ctx)
	f.spaces[ns] = cancel
	f.a.log.LogAttrs(ctx, slog.LevelDebug, "satauth: watching a namespace", slog.String("method", Method), slog.String("namespace", ns))
	f.wg.Go(func() { f.run(ctx, ns, resServiceAccounts) })
	f.wg.Go(func() { f.run(ctx, ns, resPods) })
}

// run lists and watches resource in ns until ctx ends.
func (f *follower) run(ctx context.Context, ns, resource string) {
	backoff := watchBackoffMin
	var lastLog time.Time
	fail := func(err error) bool {
		if ctx.Err() != nil {
			return false
		}
		if time.Since(lastLog) > time.Minute {
			lastLog = time.Now()
			level := slog.LevelWarn
			if errors.Is(err, ErrBrokerForbidden) || errors.Is(err, ErrBrokerUnauthorized) {
				level = slog.LevelError
			}
			f.a.log.LogAttrs(ctx, level, "satauth: watch failed; retrying", slog.String("method", Method),
				slog.String("namespace", ns), slog.String("resource", resource),
				slog.Duration("backoff", backoff), slog.Any("err", err))
		}
		t := time.NewTimer(backoff)
		defer t.Stop()
		backoff = min(2*backoff, watchBackoffMax)
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for ctx.Err() == nil {
		rv, err := f.relist(ctx, ns, resource)
		if err != nil {
			if errors.Is(err, errGone) || fail(err) {
				continue
			}
			return
		}
		for ctx.Err() == nil {
			var err error
			start := time.Now()
			rv, err = f.a.kube.watch(ctx, ns, resource, rv, func(typ string, m objectMeta) {
				backoff = watchBackoffMin // the stream works
				f.event(ns, resource, typ, m)
			})
			if err == nil && time.Since(start) < time.Second {
				err = fmt.Errorf("%w: watch %s ended at once", ErrUnavailable, resource)
			}
			if err == nil {
				continue // the server ended the call: resume
			}
			if !errors.Is(err, errGone) && !fail(err) {
				return
			}
			break // list again
		}
	}
}

// relist lists resource in ns and reconciles the caches and bindings with
// the list: what is bound but no longer listed was deleted while nobody
// watched.
func (f *follower) relist(ctx context.Context, ns, resource string) (string, error) {
	switch resource {
	case resServiceAccounts:
		seen := make(map[string]saState)
		rv, err := f.a.kube.list(ctx, ns, resource, func(m objectMeta) {
			if f.bound(f.accounts, ns+"/"+m.Name) {
				seen[m.Name] = f.a.saState(m)
			}
		})
		if err != nil {
			return "", err
		}
		// Unbound accounts may have changed unseen: forget them.
		f.a.accounts.removeIf(func(k string, _ account) bool {
			n, ok := strings.CutPrefix(k, ns+"/")
			_, bound := seen[n]
			return ok && !bound
		})
		for _, name := range f.boundNames(f.accounts, ns) {
			st, ok := seen[name]
			if !ok {
				st = saState{deleted: true}
			}
			f.serviceAccount(ns, name, st)
		}
		return rv, nil
	default:
		live := make(map[string]string) // bound pods that exist -> UID
		rv, err := f.a.kube.list(ctx, ns, resource, func(m objectMeta) {
			if f.bound(f.pods, ns+"/"+m.Name) {
				live[m.Name] = m.UID
			}
		})
		if err != nil {
			return "", err
		}
		// Cached tokens bound to a pod no longer there are dropped; those
		// of pods nobody is bound to are dropped too, since their pods
		// were not watched: they are reviewed again on next use.
		f.a.tokens.removeIf(func(_ [32]byte, id identity) bool {
			if id.namespace != ns || id.pod == "" {
				return false
			}
			uid, ok := live[id.pod]
			return !ok || (id.podUID != "" && uid != id.podUID)
		})
		for pod, uids := range f.boundPods(ns) {
			uid, ok := live[pod]
			replaced := false
			for u := range uids {
				if u != "" && (!ok || u != uid) {
					f.deadPods.put(u, struct{}{}, f.a.now().Add(deadPodTTL))
					replaced = true
				}
			}
			switch {
			case !ok:
				f.podDeleted(ns, pod, "")
			case replaced:
				f.podReplaced(ns, pod, uid)
			}
		}
		return rv, nil
	}
}

func (f *follower) bound(idx map[string]int, key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return idx[key] > 0
}

// boundNames returns the names in ns that idx counts.
func (f *follower) boundNames(idx map[string]int, ns string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range idx {
		if name, ok := strings.CutPrefix(k, ns+"/"); ok {
			out = append(out, name)
		}
	}
	return out
}

// boundPods returns the pods of ns that live sessions' tokens are bound
// to, with the UIDs they name.
func (f *follower) boundPods(ns string) map[string]map[string]struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]map[string]struct{})
	for _, b := range f.bindings {
		if b.ns != ns || b.pod == "" {
			continue
		}
		if out[b.pod] == nil {
			out[b.pod] = make(map[string]struct{})
		}
		out[b.pod][b.podUID] = struct{}{}
	}
	return out
}

// event handles one watch event.
func (f *follower) event(ns, resource, typ string, m objectMeta) {
	switch resource {
	case resServiceAccounts:
		st := f.a.saState(m)
		st.deleted = typ == "DELETED"
		f.serviceAccount(ns, m.Name, st)
	case resPods:
		if typ == "DELETED" {
			f.podDeleted(ns, m.Name, m.UID)
		}
	}
}

// serviceAccount applies a service account's new state to the caches and,
// when live sessions use the account, queues their re-check.
func (f *follower) serviceAccount(ns, name string, st saState) {
	a := f.a
	key := ns + "/" + name
	now := a.now()
	if st.deleted {
		a.accounts.update(key, account{}, now.Add(a.attrTTL))
		a.tokens.removeIf(func(_ [32]byte, id identity) bool { return id.namespace == ns && id.name == name })
	} else {
		a.accounts.update(key, account{uid: st.uid, attrs: st.attrs, found: true}, now.Add(a.attrTTL))
		a.tokens.removeIf(func(_ [32]byte, id identity) bool {
			return id.namespace == ns && id.name == name && id.uid != "" && id.uid != st.uid
		})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.accounts[key] == 0 {
		return
	}
	f.pendingSA[key] = st
	f.kickLocked()
}

// podDeleted drops the cached tokens bound to the pod and queues the
// re-check of the sessions bound to it. An empty uid matches any.
func (f *follower) podDeleted(ns, pod, uid string) {
	if uid != "" {
		// Remembered so that ModeLocal, which cannot ask the API, refuses
		// the pod's tokens on reconnect too.
		f.deadPods.put(uid, struct{}{}, f.a.now().Add(deadPodTTL))
	}
	f.a.tokens.removeIf(func(_ [32]byte, id identity) bool {
		return id.namespace == ns && id.pod == pod && (uid == "" || id.podUID == "" || id.podUID == uid)
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pods[ns+"/"+pod] == 0 {
		return
	}
	f.pendingPod[ns+"/"+pod] = uid
	f.kickLocked()
}

// podReplaced handles a relisted pod whose name is bound: sessions bound
// to another UID of that name lost their pod.
func (f *follower) podReplaced(ns, pod, uid string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pendingPod[ns+"/"+pod] = "!" + uid // any UID but this one
	f.kickLocked()
}

// podGone reports whether the watch saw the pod of this UID deleted.
func (f *follower) podGone(uid string) bool {
	_, ok := f.deadPods.get(uid, f.a.now())
	return ok
}

func (f *follower) kickLocked() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// recheckLoop re-checks the sessions of the queued changes, all queued
// changes in one pass.
func (f *follower) recheckLoop() {
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-f.kick:
		}
		f.mu.Lock()
		sas, pods := f.pendingSA, f.pendingPod
		f.pendingSA, f.pendingPod = make(map[string]saState), make(map[string]string)
		m := f.m
		f.mu.Unlock()
		start := time.Now()
		ctx, cancel := context.WithTimeout(f.ctx, time.Minute)
		rep := m.Recheck(ctx, func(ctx context.Context, s *auth.Session) error {
			return f.check(ctx, s, sas, pods)
		})
		cancel()
		f.a.log.LogAttrs(f.ctx, slog.LevelInfo, "satauth: re-checked sessions after a Kubernetes change",
			slog.String("method", Method), slog.Int("accounts", len(sas)), slog.Int("pods", len(pods)),
			slog.Int("checked", rep.Checked), slog.Int("disconnected", rep.Disconnected),
			slog.Duration("took", time.Since(start)))
		if f.afterRecheck != nil {
			f.afterRecheck(rep)
		}
	}
}

// check re-checks one session against the changed accounts and pods.
func (f *follower) check(ctx context.Context, s *auth.Session, sas map[string]saState, pods map[string]string) error {
	p := s.Principal()
	if p == nil || p.Method() != Method {
		return nil
	}
	f.mu.Lock()
	b, ok := f.bindings[p]
	f.mu.Unlock()
	if !ok {
		return nil
	}
	if b.pod != "" {
		if uid, ok := pods[b.ns+"/"+b.pod]; ok {
			other, isOther := strings.CutPrefix(uid, "!")
			if (isOther && b.podUID != "" && b.podUID != other) || (!isOther && (uid == "" || b.podUID == "" || uid == b.podUID)) {
				return fmt.Errorf("%w: %s/%s", ErrPodDeleted, b.ns, b.pod)
			}
		}
	}
	st, ok := sas[b.ns+"/"+b.name]
	if !ok {
		return nil
	}
	switch {
	case st.deleted:
		return fmt.Errorf("%w: %s/%s was deleted", ErrServiceAccountNotFound, b.ns, b.name)
	case b.uid != "" && st.uid != "" && st.uid != b.uid:
		return fmt.Errorf("%w: %s/%s was re-created (the token names another UID)", ErrServiceAccountNotFound, b.ns, b.name)
	case f.a.noAttrs || sameAttrs(p, st.attrs):
		return nil
	}
	info := p.Info()
	info.Attributes = st.attrs
	q := auth.NewPrincipal(info)
	f.mu.Lock()
	f.addLocked(q, b)
	f.mu.Unlock()
	return s.Update(ctx, p, q)
}

func sameAttrs(p *auth.Principal, attrs map[string]string) bool {
	if p.NumAttributes() != len(attrs) {
		return false
	}
	for k, v := range p.Attributes() {
		if w, ok := attrs[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// sweepLoop forgets the bindings of ended sessions and stops the watches
// of namespaces no live session comes from, every sweepInterval.
func (f *follower) sweepLoop() {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
			f.sweep()
		}
	}
}

// sweep counts the live sessions and drops what they no longer need.
func (f *follower) sweep() {
	// Only bindings recorded before the previous sweep may go: a session
	// registers with the Manager a moment after its principal passed, so a
	// binding younger than that may belong to a session not yet listed.
	f.mu.Lock()
	m, mark := f.m, f.lastMark
	f.lastMark = f.seq
	f.mu.Unlock()
	var mu sync.Mutex
	seen := make(map[*auth.Principal]struct{})
	ctx, cancel := context.WithTimeout(f.ctx, time.Minute)
	m.Recheck(ctx, func(_ context.Context, s *auth.Session) error {
		if p := s.Principal(); p != nil && p.Method() == Method {
			mu.Lock()
			seen[p] = struct{}{}
			mu.Unlock()
		}
		return nil
	})
	interrupted := ctx.Err() != nil
	cancel()
	if interrupted {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for p, b := range f.bindings {
		if _, ok := seen[p]; !ok && b.seq <= mark {
			f.removeLocked(p, b)
		}
	}
	used := make(map[string]bool)
	for _, b := range f.bindings {
		used[b.ns] = true
	}
	for ns, stop := range maps.Clone(f.spaces) {
		if used[ns] {
			continue
		}
		stop()
		delete(f.spaces, ns)
		// Nothing watches ns now: what is cached of it could go stale.
		f.a.tokens.removeIf(func(_ [32]byte, id identity) bool { return id.namespace == ns })
		f.a.accounts.removeIf(func(k string, _ account) bool { return strings.HasPrefix(k, ns+"/") })
		f.a.log.LogAttrs(f.ctx, slog.LevelDebug, "satauth: stopped watching a namespace", slog.String("method", Method), slog.String("namespace", ns))
	}
}

// watched returns the namespaces being watched and the bindings kept, for
// tests.
func (f *follower) watched() (spaces []string, bindings int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ns := range f.spaces {
		spaces = append(spaces, ns)
	}
	return spaces, len(f.bindings)
}

// saState turns a ServiceAccount's metadata into its state: its UID and
// the attributes its annotations give.
func (a *Authenticator) saState(m objectMeta) saState {
	return saState{uid: m.UID, attrs: a.attributes(m.Annotations)}
}

// attributes returns the annotations that begin with the prefix, without
// it.
func (a *Authenticator) attributes(annotations map[string]string) map[string]string {
	var attrs map[string]string
	for k, v := range annotations {
		if name, ok := strings.CutPrefix(k, a.prefix); ok && name != "" {
			if attrs == nil {
				attrs = make(map[string]string)
			}
			attrs[name] = v
		}
	}
	return attrs
}
