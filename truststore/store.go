package truststore

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/internal/filewatch"
)

// DefaultDebounce is how long a Store waits after the last file event
// before it reloads: a writer that truncates then writes, or a Kubernetes
// atomic-writer swap, produces a burst of events.
const DefaultDebounce = 100 * time.Millisecond

// Config configures a file-backed [Store].
type Config struct {
	// CAPaths are PEM files of trusted client CAs, or directories whose
	// files all hold PEM CA certificates. In a directory, names that begin
	// with a dot are skipped (Kubernetes keeps its "..data" link and
	// timestamped directories there) and symbolic links are followed.
	CAPaths []string
	// CRLPaths are CRL files (PEM "X509 CRL" blocks or one DER CRL), or
	// directories of them, with the same rules.
	CRLPaths []string
	// DisableWatch turns hot reload off: the files are read once by New
	// and again only on Reload.
	DisableWatch bool
	// Debounce is the quiet time after a file event before a reload; zero
	// means DefaultDebounce.
	Debounce time.Duration
	// Logger receives reload successes and failures; nil means
	// slog.Default(). Only certificate subjects, fingerprints and file
	// names are logged.
	Logger *slog.Logger
	// OnError, when set, is called (from the watcher goroutine) with each
	// failed reload, after the error is logged. The previous set stays in
	// force.
	OnError func(error)
	// Observer, when set, is told of each load (auth.Reload) and failed
	// reload (auth.ReloadFailed) as auth.ComponentTruststore.
	Observer auth.Observer
}

// Event tells a subscriber about a reload.
type Event struct {
	// Generation is the generation of Set; it grows by one with every
	// change of content.
	Generation uint64
	// Set is the set in force after the reload.
	Set *Set
	// Err is the reload error when the reload failed and Set is the last
	// good set, kept; nil when Set is new.
	Err error
}

// Store is a [Source] that reloads in place. A file-backed Store (New)
// watches its files and directories and reloads when they change; an
// in-memory Store (NewMemory) changes with Replace. Readers get the current
// Set with one atomic load.
//
// A reload that fails (a truncated PEM, an empty or garbage file, a CRL
// with a bad signature, a missing file) keeps the last good Set, logs the
// error, records it for Err, calls Config.OnError and tells subscribers
// with Event.Err set. A reload that succeeds with no CA at all (every CA
// file removed from a directory) is a change like any other, so every
// certificate is refused; it is logged at error level.
type Store struct {
	cfg      Config
	log      *slog.Logger
	current  atomic.Pointer[Set]
	updated  chan struct{}
	watcher  *filewatch.Watcher // nil when not watching
	reloadMu sync.Mutex         // serialises reloads and publications

	mu     sync.Mutex
	err    error
	subs   map[int]func(Event)
	nextID int
}

// New loads the files named by cfg and, unless cfg.DisableWatch, watches
// them. It fails if the first load fails: a broker should not start with a
// truststore it cannot read. Call Close to stop watching.
func New(cfg Config) (*Store, error) {
	if len(cfg.CAPaths) == 0 {
		return nil, errors.New("truststore: Config.CAPaths is empty")
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	s := newStore(cfg)
	set, err := s.load()
	if err != nil {
		return nil, err
	}
	s.publish(set)
	if cfg.DisableWatch {
		return s, nil
	}
	// Each directory path is watched itself, and each file path through
	// its parent: a Kubernetes volume swaps its "..data" link in the
	// parent, and editors replace files by renaming.
	w, err := filewatch.New(filewatch.Config{
		Paths:    slices.Concat(cfg.CAPaths, cfg.CRLPaths),
		Debounce: cfg.Debounce,
		Reload:   func() { _ = s.Reload() },
		OnError: func(err error) {
			s.log.Warn("truststore: watcher error", slog.String("err", err.Error()))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("truststore: %w", err)
	}
	s.watcher = w
	return s, nil
}

// NewMemory returns a Store that holds set (an empty set when nil) and
// changes only with Replace. Close is optional.
func NewMemory(set *Set) *Store {
	s := newStore(Config{})
	if set == nil {
		set, _ = NewSet(nil, nil)
	}
	s.publish(set)
	return s
}

func newStore(cfg Config) *Store {
	s := &Store{
		cfg:     cfg,
		log:     cfg.Logger,
		updated: make(chan struct{}, 1),
		subs:    make(map[int]func(Event)),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s
}

// Current returns the set in force. It never returns nil.
func (s *Store) Current() *Set { return s.current.Load() }

// Updated returns a channel that receives a value after the set changes. It
// holds at most one pending value, so a slow reader sees one notification
// for several changes and should read Current. It has a single reader; use
// Subscribe for several.
func (s *Store) Updated() <-chan struct{} { return s.updated }

// Err returns the error of the last reload, or nil if it succeeded.
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Subscribe calls fn after every reload, successful or not, in order, from
// the goroutine that reloaded. fn must not block for long and must not call
// Subscribe, Replace or Reload. The returned function removes the
// subscription.
func (s *Store) Subscribe(fn func(Event)) (cancel func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextID
	s.nextID++
	s.subs[id] = fn
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.subs, id)
	}
}

// Notify calls fn after each new set is in force (a CA or CRL changed); a
// failed reload calls nothing. It is the [auth.Notifier] change signal
// shared by every reloadable source: give the Store to an auth.Manager as a
// watch with the X.509 authenticator's check and the Manager re-checks the
// live sessions itself:
//
//	auth.Watch{Name: "truststore", Source: store, Check: x509Authn.Check}
func (s *Store) Notify(fn func()) (cancel func()) {
	return s.Subscribe(func(ev Event) {
		if ev.Err == nil {
			fn()
		}
	})
}

// Replace puts set in force (a new generation) and tells subscribers. On a
// file-backed Store the next file change replaces it again.
func (s *Store) Replace(set *Set) {
	if set == nil {
		set, _ = NewSet(nil, nil)
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	// Rebuild so that CA objects of the current set are reused and the
	// generation is ours to set; set's own content was already checked.
	if rebuilt, err := newSet(set.cas, set.CRLs(), s.current.Load()); err == nil {
		set = rebuilt
	}
	s.publishLocked(set, nil)
}

// Reload reads the files now. On error the last good set stays in force.
func (s *Store) Reload() error {
	if len(s.cfg.CAPaths) == 0 {
		return nil
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	set, err := s.load()
	if err != nil {
		s.log.Error("truststore: reload failed; keeping the last good set",
			slog.String("err", err.Error()),
			slog.Uint64("generation", s.current.Load().Generation()))
		s.publishLocked(nil, err)
		if s.cfg.OnError != nil {
			s.cfg.OnError(err)
		}
		return err
	}
	if set.sameContent(s.current.Load()) {
		s.mu.Lock()
		s.err = nil
		s.mu.Unlock()
		return nil
	}
	s.publishLocked(set, nil)
	return nil
}

// Close stops watching. It waits for a reload in progress (with its
// subscribers and OnError) to end, and the watcher starts none after it
// returns; do not call it from those callbacks. The last set stays readable.
func (s *Store) Close() error {
	if s.watcher == nil {
		return nil
	}
	return s.watcher.Close()
}

// observe tells the Observer of a load (ok) or a failed reload.
func (s *Store) observe(ok bool) {
	if s.cfg.Observer == nil {
		return
	}
	k := auth.ReloadFailed
	if ok {
		k = auth.Reload
	}
	s.cfg.Observer.Component(auth.ComponentEvent{Component: auth.ComponentTruststore, Kind: k})
}

func (s *Store) publish(set *Set) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.publishLocked(set, nil)
}

// publishLocked puts set in force with the next generation, or, with a nil
// set, reports err against the current one. reloadMu is held.
func (s *Store) publishLocked(set *Set, err error) {
	ev := Event{Err: err}
	s.observe(set != nil)
	if set != nil {
		prev := s.current.Load()
		next := *set
		if prev != nil {
			next.gen = prev.gen + 1
		} else {
			next.gen = 1
		}
		s.current.Store(&next)
		ev.Set = &next
		if next.Len() == 0 {
			s.log.Error("truststore: no trusted client CA: every client certificate will be refused",
				slog.Uint64("generation", next.gen))
		} else {
			s.log.Info("truststore: loaded",
				slog.Uint64("generation", next.gen),
				slog.Int("cas", next.Len()),
				slog.Int("crls", len(next.crls)))
		}
		select {
		case s.updated <- struct{}{}:
		default:
		}
	} else {
		ev.Set = s.current.Load()
	}
	ev.Generation = ev.Set.gen
	s.mu.Lock()
	s.err = err
	ids := make([]int, 0, len(s.subs))
	for id := range s.subs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	fns := make([]func(Event), 0, len(ids))
	for _, id := range ids {
		fns = append(fns, s.subs[id])
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn(ev)
	}
}

// readFiles reads every file under paths (files, or directories of them)
// and parses each; it returns what parsed and an error per file that did not.
func readFiles[T any](paths []string, parse func([]byte) ([]T, error)) ([]T, []error) {
	var (
		out  []T
		errs []error
	)
	for _, p := range paths {
		files, err := listFiles(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				errs = append(errs, fmt.Errorf("truststore: %w", err))
				continue
			}
			v, err := parse(data)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f, err))
				continue
			}
			out = append(out, v...)
		}
	}
	return out, errs
}

// load reads every file and builds a Set.
func (s *Store) load() (*Set, error) {
	cas, errs := readFiles(s.cfg.CAPaths, ParseCertificates)
	crls, crlErrs := readFiles(s.cfg.CRLPaths, ParseCRLs)
	errs = append(errs, crlErrs...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	set, err := newSet(cas, crls, s.current.Load())
	if err != nil {
		return nil, err
	}
	return set, nil
}

// listFiles returns p if it is a file, or the regular files in p (following
// symbolic links, skipping names that begin with a dot) if it is a
// directory.
func listFiles(p string) ([]string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("truststore: %w", err)
	}
	if !fi.IsDir() {
		return []string{p}, nil
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return nil, fmt.Errorf("truststore: %w", err)
	}
	var files []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		full := filepath.Join(p, e.Name())
		fi, err := os.Stat(full)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // a dangling link in the middle of a swap
			}
			return nil, fmt.Errorf("truststore: %w", err)
		}
		if fi.Mode().IsRegular() {
			files = append(files, full)
		}
	}
	return files, nil
}
