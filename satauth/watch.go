package satauth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/internal/kubeapi"
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
	seq           uint64 // when it was recorded: changes after it apply
	seen          uint64 // the last sweep pass that saw its session
}

// saState is a service account as the watch last saw it.
type saState struct {
	deleted bool
	uid     string
	attrs   map[string]string
}

// saChange and podChange are changes the watch saw, kept until every
// session they concern has been re-checked (two sweeps): a re-check
// applies a change to the bindings recorded before upTo. A watch event's
// change applies to every binding recorded before the event (upTo is its
// seq); a relist's only to those recorded before the list was asked for,
// since a session verified while the list was under way may be bound to
// an object the list's snapshot predates.
type saChange struct {
	st   saState
	seq  uint64 // when it was recorded: the sweep drops it two passes later
	upTo uint64
}

type podChange struct {
	uid  string // the deleted pod's UID; "" any; "!UID" any but UID
	seq  uint64
	upTo uint64
}

// followRun is one period of following, from the first subscriber to
// the last one's cancel.
type followRun struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// follower follows Kubernetes for the sessions an Authenticator verified:
// it watches the service accounts and pods of the namespaces those
// sessions come from and signals (auth.Notifier) when their account or
// pod changed; its check (the Check of [Authenticator.Watch]) re-checks a
// session against what changed. It runs while it has subscribers.
type follower struct {
	a   *Authenticator
	sig auth.Signal

	mu     sync.Mutex
	run    *followRun // nil while nobody subscribes
	subs   int
	closed bool // Authenticator.Close
	seq    uint64
	// The sweep: gen counts the sweep passes fired. A sweep pass is the
	// first re-check pass that calls check after the fire and was not
	// already running then (stale): Manager.Recheck hands every check of
	// one pass the same ctx and cancels it when the pass has ended, so
	// that ctx (sweepCtx) tells when the pass is over and whether it was
	// cut short (DeadlineExceeded).
	//
	// While no pass is adopted, a pass that was running at the fire may
	// still be under way (a change started it, and it holds back the
	// pass the fire asked for, however long it takes): its ctx
	// (staleCtx) not ended yet, checks in progress (checking) or made
	// since the last tick (checks against tickChecks) say so, and the
	// sweep waits for it.
	gen          uint64
	pending      bool // fired, no pass adopted yet
	pendingTicks int
	checking     atomic.Int64    // check calls in progress
	checks       atomic.Uint64   // check calls made
	tickChecks   uint64          // checks at the last pending tick
	lastCtx      context.Context // of the last check call
	staleCtx     context.Context // lastCtx when the pass was fired
	sweepCtx     context.Context // the adopted pass
	fireSeq      uint64          // seq when the pass was fired
	prevFireSeq  uint64          // seq when the pass before was fired
	bindings     map[*auth.Principal]binding
	accounts     map[string]int    // "ns/name" -> bindings naming it
	pods         map[string]int    // "ns/pod" -> bindings naming it
	spaces       map[string]func() // watched namespace -> stop
	// Changes the re-checks apply.
	changedSA  map[string]saChange  // "ns/name"
	changedPod map[string]podChange // "ns/pod"
	// deadPods are the UIDs of pods the watch saw deleted, deadAccounts
	// those of service accounts deleted or replaced: facts that do not
	// depend on the order in which the watch tells them, unlike the last
	// change of a name (changedSA, changedPod).
	deadPods     *lru[string, struct{}]
	deadAccounts *lru[string, struct{}]
}

func newFollower(a *Authenticator) *follower {
	return &follower{
		a:            a,
		bindings:     make(map[*auth.Principal]binding),
		accounts:     make(map[string]int),
		pods:         make(map[string]int),
		spaces:       make(map[string]func()),
		changedSA:    make(map[string]saChange),
		changedPod:   make(map[string]podChange),
		deadPods:     newLRU[string, struct{}](DefaultCacheSize),
		deadAccounts: newLRU[string, struct{}](DefaultCacheSize),
	}
}

// WatchName names the satauth watch in logs ([auth.Watch].Name).
const WatchName = "satauth"

// Watch returns the Kubernetes follower of this Authenticator as an
// [auth.Watch], for auth.Config.Watches: the Manager subscribes to its
// Source itself, and the follower runs from that subscription until the
// Manager's Close (or the Authenticator's). Source signals each change of
// a service account or pod that a live session was verified from (what is
// followed and what a change does is below); Check re-checks one session against the changes: it returns
// ErrServiceAccountNotFound or ErrPodDeleted (DISCONNECT 0x87) or gives
// the session a principal with the new attributes. Every sweep (30 s) the
// Source signals once more while SAT sessions are live, so that the
// bindings of ended sessions are forgotten: the Manager's re-check log
// line then appears with nothing disconnected. timeout bounds one
// re-check (zero: auth.DefaultRecheckTimeout).
//
// For every namespace that a connected client's service account is in, the
// follower lists and watches that namespace's ServiceAccounts and Pods (metadata
// only) with the Kubernetes list+watch API; the watch of a namespace starts
// when the first session from it authenticates and stops within four sweeps
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
// attributes), the follower does nothing.
//
// With Config.DisableWatch, or when the Authenticator needs no API, the
// Source never signals and Check passes every session.
func (a *Authenticator) Watch(timeout time.Duration) auth.Watch {
	if a.follow == nil {
		return auth.Watch{Name: WatchName, Source: new(auth.Signal), Timeout: timeout,
			Check: func(context.Context, *auth.Session) error { return nil }}
	}
	return auth.Watch{Name: WatchName, Source: a.follow, Check: a.follow.check, Timeout: timeout}
}

// Following reports whether the Authenticator follows Kubernetes: false
// with Config.DisableWatch or when it needs no API.
func (a *Authenticator) Following() bool { return a.follow != nil }

// RecheckOnChange follows Kubernetes for the live sessions of m whose
// principals this Authenticator verified, until the returned function is
// called. It is [Authenticator.Watch] given to m's [auth.Manager.Watch].
// Call it once, right after auth.NewManager and before clients connect:
// sessions authenticated before it are not followed.
//
// Deprecated: Use [Authenticator.Watch] in auth.Config.Watches, which
// needs no Manager beforehand (or auth.Manager.Watch(a.Watch(time.Minute))):
// the same follower. See API.md.
func (a *Authenticator) RecheckOnChange(m *auth.Manager) (stop func()) {
	if a.follow == nil || m == nil {
		return func() {}
	}
	stop, err := m.Watch(a.Watch(time.Minute))
	if err != nil { // cannot happen: the watch is complete
		a.log.LogAttrs(context.Background(), slog.LevelError, "satauth: not following Kubernetes", slog.String("method", Method), slog.Any("err", err))
		return func() {}
	}
	return stop
}

// Notify implements auth.Notifier: the first subscriber starts the
// follower, the last one's cancel stops it and waits for its goroutines.
func (f *follower) Notify(fn func()) (cancel func()) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return func() {}
	}
	if f.subs == 0 {
		r := &followRun{}
		r.ctx, r.cancel = context.WithCancel(context.Background())
		f.run = r
		r.wg.Go(func() { f.sweepLoop(r.ctx) })
	}
	f.subs++
	unsubscribe := f.sig.Notify(fn)
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			unsubscribe()
			f.mu.Lock()
			f.subs--
			var r *followRun
			if f.subs == 0 {
				r = f.detachLocked()
			}
			f.mu.Unlock()
			r.end()
		})
	}
}

// close stops the follower for good (Authenticator.Close).
func (f *follower) close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	r := f.detachLocked()
	f.mu.Unlock()
	r.end()
}

// detachLocked ends the current run's bookkeeping and returns the run for
// end, to be called without f.mu.
func (f *follower) detachLocked() *followRun {
	r := f.run
	f.run = nil
	clear(f.bindings)
	clear(f.accounts)
	clear(f.pods)
	clear(f.spaces)
	clear(f.changedSA)
	clear(f.changedPod)
	f.pending, f.lastCtx, f.staleCtx, f.sweepCtx = false, nil, nil, nil
	return r
}

// end cancels the run and waits for its goroutines.
func (r *followRun) end() {
	if r == nil {
		return
	}
	r.cancel()
	r.wg.Wait()
}

// track records the binding of a principal that just passed, and starts
// watching its namespace if no watch runs there.
func (f *follower) track(p *auth.Principal, id identity) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.run == nil {
		return
	}
	f.addLocked(p, binding{ns: id.namespace, name: id.name, uid: id.uid, pod: id.pod, podUID: id.podUID})
}

func (f *follower) addLocked(p *auth.Principal, b binding) {
	if _, ok := f.bindings[p]; ok {
		return
	}
	if b.seq == 0 {
		f.seq++
		b.seq = f.seq
	}
	b.seen = f.gen
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
	r := f.run
	ctx, cancel := context.WithCancel(r.ctx)
	f.spaces[ns] = cancel
	f.a.log.LogAttrs(ctx, slog.LevelDebug, "satauth: watching a namespace", slog.String("method", Method), slog.String("namespace", ns))
	r.wg.Go(func() { f.follow(ctx, ns, resServiceAccounts) })
	r.wg.Go(func() { f.follow(ctx, ns, resPods) })
}

// follow lists and watches resource in ns until ctx ends (the shared
// loop of kubeapi.Follow: resume, 410 Gone, backoff).
func (f *follower) follow(ctx context.Context, ns, resource string) {
	fl := kubeapi.Follow{
		Client: f.a.kube.Client,
		Op:     "watch " + resource, Path: collection(ns, resource), Accept: kubeapi.AcceptMeta,
		Relist: func(ctx context.Context) (string, error) { return f.relist(ctx, ns, resource) },
		Event:  func(typ string, o kubeapi.Object) { f.event(ns, resource, typ, o.Meta) },
		Failed: func(err error, backoff time.Duration) {
			level := slog.LevelWarn
			if errors.Is(err, ErrBrokerForbidden) || errors.Is(err, ErrBrokerUnauthorized) {
				level = slog.LevelError
			}
			f.a.log.LogAttrs(ctx, level, "satauth: watch failed; retrying", slog.String("method", Method),
				slog.String("namespace", ns), slog.String("resource", resource),
				slog.Duration("backoff", backoff), slog.Any("err", err))
		},
		BackoffMin: watchBackoffMin, BackoffMax: watchBackoffMax,
	}
	fl.Run(ctx)
}

// relistTries bounds the lists of one relist (see relist).
const relistTries = 3

// relist lists resource in ns and reconciles the caches and bindings with
// the list: what is bound but no longer listed was deleted while nobody
// watched.
//
// The list is a snapshot taken at some point after it was asked for, and
// sessions go on being verified meanwhile: one verified during the list
// may be bound to an account or pod created after the snapshot, which
// the list cannot show. So a list judges only the bindings recorded
// before it was asked for (seq < upTo); those recorded during it are
// judged by it only when it shows their object as they were verified,
// else the list is asked for again (up to relistTries times, after which
// the watch, which follows from the list, is left to follow them).
func (f *follower) relist(ctx context.Context, ns, resource string) (string, error) {
	for try := 1; ; try++ {
		upTo := f.nextSeq()
		var (
			rv      string
			settled bool
			err     error
		)
		if resource == resServiceAccounts {
			rv, settled, err = f.relistAccounts(ctx, ns, upTo)
		} else {
			rv, settled, err = f.relistPods(ctx, ns, upTo)
		}
		if err != nil || settled || try == relistTries {
			return rv, err
		}
	}
}

// nextSeq returns a new seq: the bindings recorded before it have smaller
// ones.
func (f *follower) nextSeq() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	return f.seq
}

// relistAccounts is relist for service accounts. settled is false when
// a binding recorded during the list names an account the list does not
// show with the binding's UID.
func (f *follower) relistAccounts(ctx context.Context, ns string, upTo uint64) (rv string, settled bool, err error) {
	seen := make(map[string]saState)
	rv, err = f.a.kube.list(ctx, ns, resServiceAccounts, func(m objectMeta) {
		if f.bound(f.accounts, ns+"/"+m.Name) {
			seen[m.Name] = f.a.saState(m)
		}
	})
	if err == nil {
		err = ctx.Err() // stopped meanwhile: reconcile nothing
	}
	if err != nil {
		return "", false, err
	}
	// Unbound accounts may have changed unseen: forget them.
	f.a.accounts.removeIf(func(k string, _ account) bool {
		n, ok := strings.CutPrefix(k, ns+"/")
		_, bound := seen[n]
		return ok && !bound
	})
	before, during := f.boundAccounts(ns, upTo)
	for name, uids := range before {
		st, ok := seen[name]
		if !ok {
			st = saState{deleted: true}
		}
		for u := range uids {
			if u != "" && u != st.uid { // deleted, or replaced by the listed one
				f.deadAccounts.put(u, struct{}{}, f.a.now().Add(deadPodTTL))
			}
		}
		f.serviceAccount(ns, name, st, upTo)
	}
	settled = true
	for name, uids := range during {
		st, ok := seen[name]
		for uid := range uids {
			if !ok || (uid != "" && uid != st.uid) {
				settled = false
			}
		}
	}
	return rv, settled, nil
}

// relistPods is relist for pods. settled is false when a binding
// recorded during the list names a pod the list does not show with the
// binding's UID.
func (f *follower) relistPods(ctx context.Context, ns string, upTo uint64) (rv string, settled bool, err error) {
	live := make(map[string]string) // bound pods that exist -> UID
	rv, err = f.a.kube.list(ctx, ns, resPods, func(m objectMeta) {
		if f.bound(f.pods, ns+"/"+m.Name) {
			live[m.Name] = m.UID
		}
	})
	if err == nil {
		err = ctx.Err() // stopped meanwhile: reconcile nothing
	}
	if err != nil {
		return "", false, err
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
	before, during := f.boundPods(ns, upTo)
	for pod, uids := range before {
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
			f.podChanged(ns, pod, "", upTo)
		case replaced:
			f.podChanged(ns, pod, "!"+uid, upTo) // any UID but this one
		}
	}
	settled = true
	for pod, uids := range during {
		uid, ok := live[pod]
		for u := range uids {
			if !ok || (u != "" && u != uid) {
				settled = false
			}
		}
	}
	return rv, settled, nil
}

func (f *follower) bound(idx map[string]int, key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return idx[key] > 0
}

// boundAccounts returns the service accounts of ns that live sessions
// are bound to, with the UIDs they name: before, those of the bindings
// recorded before upTo; during, those of the others.
func (f *follower) boundAccounts(ns string, upTo uint64) (before, during map[string]map[string]struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before, during = make(map[string]map[string]struct{}), make(map[string]map[string]struct{})
	for _, b := range f.bindings {
		if b.ns != ns {
			continue
		}
		out := during
		if b.seq < upTo {
			out = before
		}
		if out[b.name] == nil {
			out[b.name] = make(map[string]struct{})
		}
		out[b.name][b.uid] = struct{}{}
	}
	return before, during
}

// boundPods returns the pods of ns that live sessions' tokens are bound
// to, with the UIDs they name: before, those of the bindings recorded
// before upTo; during, those of the others.
func (f *follower) boundPods(ns string, upTo uint64) (before, during map[string]map[string]struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before, during = make(map[string]map[string]struct{}), make(map[string]map[string]struct{})
	for _, b := range f.bindings {
		if b.ns != ns || b.pod == "" {
			continue
		}
		out := during
		if b.seq < upTo {
			out = before
		}
		if out[b.pod] == nil {
			out[b.pod] = make(map[string]struct{})
		}
		out[b.pod][b.podUID] = struct{}{}
	}
	return before, during
}

// event handles one watch event.
func (f *follower) event(ns, resource, typ string, m objectMeta) {
	switch resource {
	case resServiceAccounts:
		st := f.a.saState(m)
		st.deleted = typ == "DELETED"
		f.serviceAccount(ns, m.Name, st, 0)
	case resPods:
		if typ == "DELETED" {
			f.podDeleted(ns, m.Name, m.UID)
		}
	}
}

// serviceAccount applies a service account's new state to the caches and,
// when live sessions use the account, queues the re-check of those
// recorded before upTo (0: all).
func (f *follower) serviceAccount(ns, name string, st saState, upTo uint64) {
	a := f.a
	key := ns + "/" + name
	now := a.now()
	if st.deleted {
		if st.uid != "" {
			f.deadAccounts.put(st.uid, struct{}{}, now.Add(deadPodTTL))
		}
		a.accounts.update(key, account{}, now.Add(a.attrTTL))
		a.tokens.removeIf(func(_ [32]byte, id identity) bool { return id.namespace == ns && id.name == name })
	} else {
		a.accounts.update(key, account{uid: st.uid, attrs: st.attrs, found: true}, now.Add(a.attrTTL))
		a.tokens.removeIf(func(_ [32]byte, id identity) bool {
			return id.namespace == ns && id.name == name && id.uid != "" && id.uid != st.uid
		})
	}
	f.mu.Lock()
	if f.accounts[key] == 0 {
		f.mu.Unlock()
		return
	}
	f.seq++
	f.changedSA[key] = saChange{st: st, seq: f.seq, upTo: cmp.Or(upTo, f.seq)}
	f.mu.Unlock()
	f.sig.Fire()
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
	f.podChanged(ns, pod, uid, 0)
}

// podChanged records a change of a bound pod for the bindings recorded
// before upTo (0: all) and signals it.
func (f *follower) podChanged(ns, pod, uid string, upTo uint64) {
	f.mu.Lock()
	if f.pods[ns+"/"+pod] == 0 {
		f.mu.Unlock()
		return
	}
	f.seq++
	f.changedPod[ns+"/"+pod] = podChange{uid: uid, seq: f.seq, upTo: cmp.Or(upTo, f.seq)}
	f.mu.Unlock()
	f.sig.Fire()
}

// accountGone reports whether the watch saw the service account of this
// UID deleted or replaced.
func (f *follower) accountGone(uid string) bool {
	_, ok := f.deadAccounts.get(uid, f.a.now())
	return ok
}

// podGone reports whether the watch saw the pod of this UID deleted.
func (f *follower) podGone(uid string) bool {
	_, ok := f.deadPods.get(uid, f.a.now())
	return ok
}

// check re-checks one session against the changes of its account and pod
// seen since its binding was recorded, and marks it seen for the sweep.
// Applying a change twice is harmless, so every pass may apply all.
func (f *follower) check(ctx context.Context, s *auth.Session) error {
	f.checking.Add(1)
	defer f.checking.Add(-1)
	f.checks.Add(1)
	p := s.Principal()
	if p == nil || p.Method() != Method {
		return nil
	}
	f.mu.Lock()
	if ctx != f.lastCtx {
		f.lastCtx = ctx
		if f.pending && ctx != f.staleCtx {
			f.pending, f.sweepCtx = false, ctx // this pass is the sweep's
		}
	}
	b, ok := f.bindings[p]
	if ok && ctx == f.sweepCtx {
		b.seen = f.gen
		f.bindings[p] = b
	}
	sa, saChanged := f.changedSA[b.ns+"/"+b.name]
	pc, podChanged := f.changedPod[b.ns+"/"+b.pod]
	f.mu.Unlock()
	if !ok {
		return nil
	}
	if b.pod != "" && podChanged {
		// The pending change is the last one of the pod's name; an
		// earlier one, about another UID of that name, may not have been
		// applied yet: the deleted UIDs the watch remembers say it too.
		if b.podUID != "" && f.podGone(b.podUID) {
			return fmt.Errorf("%w: %s/%s", ErrPodDeleted, b.ns, b.pod)
		}
		uid := pc.uid
		other, isOther := strings.CutPrefix(uid, "!")
		if pc.upTo > b.seq && ((isOther && b.podUID != "" && b.podUID != other) || (!isOther && (uid == "" || b.podUID == "" || uid == b.podUID))) {
			return fmt.Errorf("%w: %s/%s", ErrPodDeleted, b.ns, b.pod)
		}
	}
	if saChanged && b.uid != "" && f.accountGone(b.uid) {
		return fmt.Errorf("%w: %s/%s was deleted or re-created (the token names a UID that is gone)", ErrServiceAccountNotFound, b.ns, b.name)
	}
	if !saChanged || sa.upTo <= b.seq {
		return nil
	}
	st := sa.st
	switch {
	case b.uid != "" && st.uid != "" && st.uid != b.uid:
		// The last change is about another account of that name. If it
		// replaced this one, this one's end came first and is a fact
		// (deadAccounts, above); else this one is the newer, verified
		// while the watch was still telling of the older: neither ends
		// the session, nor do the other's attributes apply.
		return nil
	case st.deleted:
		return fmt.Errorf("%w: %s/%s was deleted", ErrServiceAccountNotFound, b.ns, b.name)
	case f.a.noAttrs || sameAttrs(p, st.attrs):
		return nil
	}
	info := p.Info()
	info.Attributes = st.attrs
	q := auth.NewPrincipal(info)
	f.mu.Lock()
	if f.run != nil {
		f.addLocked(q, b) // keeps b.seq: changes since still apply to q
	}
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
func (f *follower) sweepLoop(ctx context.Context) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if f.sweep() {
				f.sig.Fire()
			}
		}
	}
}

// sweep drops what the live sessions no longer need once a sweep pass
// has walked them all, and reports whether to fire the next one (sessions
// are bound), which the subscribers then run through check, marking each
// live session's binding seen. A binding is dropped when the completed
// pass did not see its session and it was recorded before the pass before
// it was fired (a session registers with the Manager a moment after its
// principal passed); changes are dropped once that old too. A pass still
// running is waited for; one cut short by its timeout is fired again; one
// that never called check (no live SAT session on the watch's ports) is
// taken for a pass that saw nothing after three ticks with no check
// called (a pass begun before the fire, still under way, holds it back).
func (f *follower) sweep() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.run == nil {
		return false
	}
	completed := false
	switch {
	case f.pending:
		n := f.checks.Load()
		stale := f.staleCtx != nil && f.staleCtx.Done() != nil && f.staleCtx.Err() == nil
		if stale || f.checking.Load() > 0 || n != f.tickChecks {
			f.tickChecks = n
			return false // a pass begun before the fire is still under way
		}
		f.pendingTicks++
		if f.pendingTicks < 3 {
			return false
		}
		f.pending, completed = false, true
	case f.sweepCtx != nil && f.sweepCtx.Err() == nil:
		return false // still running
	case f.sweepCtx != nil && errors.Is(f.sweepCtx.Err(), context.Canceled):
		completed = true
	}
	f.sweepCtx = nil
	if completed {
		f.dropUnseenLocked()
	}
	if len(f.bindings) == 0 {
		return false
	}
	f.gen++
	f.pending, f.pendingTicks, f.staleCtx = true, 0, f.lastCtx
	f.prevFireSeq, f.fireSeq = f.fireSeq, f.seq
	return true
}

// dropUnseenLocked ends the sweep pass f.gen: it drops the bindings it did
// not see, the changes nobody needs and the watches of namespaces no
// binding is in.
func (f *follower) dropUnseenLocked() {
	mark := f.prevFireSeq
	for p, b := range f.bindings {
		if b.seen < f.gen && b.seq <= mark {
			f.removeLocked(p, b)
		}
	}
	for k, c := range f.changedSA {
		if c.seq <= mark || f.accounts[k] == 0 {
			delete(f.changedSA, k)
		}
	}
	for k, c := range f.changedPod {
		if c.seq <= mark || f.pods[k] == 0 {
			delete(f.changedPod, k)
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
		f.a.log.LogAttrs(f.run.ctx, slog.LevelDebug, "satauth: stopped watching a namespace", slog.String("method", Method), slog.String("namespace", ns))
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
