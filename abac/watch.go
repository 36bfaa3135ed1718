package abac

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttauth/mqttauth/internal/filewatch"

	"github.com/mqttauth/mqttauth/auth"
)

// DefaultDebounce is how long a [Watcher] waits after the last change event
// before it reloads.
const DefaultDebounce = 100 * time.Millisecond

// WatchConfig configures a [Watcher].
type WatchConfig struct {
	// Path is the policy file, YAML or JSON. Required.
	Path string
	// Debounce is how long to wait after the last change event before
	// reloading, so that an editor's or Kubernetes' several writes make one
	// reload. Zero means DefaultDebounce.
	Debounce time.Duration
	// Logger receives a record per reload and per rejected file; nil means
	// slog.Default().
	Logger *slog.Logger
	// OnChange is called, on the watcher's goroutine, after a changed
	// policy is in place. Re-check live sessions from it, so that exactly
	// those that lost Connect permission are disconnected:
	//
	//	OnChange: func(p *abac.Policy) { m.Recheck(ctx, auth.CheckConnect(p)) }
	//
	// Reloads wait while it runs.
	OnChange func(p *Policy)
	// OnError is called, on the watcher's goroutine, when a changed file
	// cannot be read or compiled; the last good policy stays in force.
	OnError func(err error)
}

// Watcher is an [auth.Authorizer] backed by a policy file that it reloads in
// place when the file changes.
//
// It watches the file's directory, not the file, so that a Kubernetes
// ConfigMap update (an atomic swap of the ..data symlink) is seen, as is an
// editor's write-and-rename. Reloads are debounced; a file whose content has
// not changed is not reloaded. A file that fails to load leaves the last
// good policy in force; Err returns the failure until a good file is loaded.
// Each loaded policy gets the next generation number.
type Watcher struct {
	path     string
	debounce time.Duration
	log      *slog.Logger
	onChange func(*Policy)
	onError  func(error)

	cur atomic.Pointer[Policy]

	mu   sync.Mutex // serialises reloads; guards what follows
	gen  uint64
	err  error
	last []byte // content of the last good file

	fw *filewatch.Watcher
}

var _ auth.Authorizer = (*Watcher)(nil)

// NewWatcher loads the policy file and starts watching it. The first load
// must succeed.
func NewWatcher(cfg WatchConfig) (*Watcher, error) {
	if cfg.Path == "" {
		return nil, errors.New("abac: WatchConfig.Path is required")
	}
	if cfg.Debounce < 0 {
		return nil, errors.New("abac: negative WatchConfig.Debounce")
	}
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("abac: %w", err)
	}
	w := &Watcher{
		path:     path,
		debounce: cfg.Debounce,
		log:      cfg.Logger,
		onChange: cfg.OnChange,
		onError:  cfg.OnError,
	}
	if w.debounce == 0 {
		w.debounce = DefaultDebounce
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("abac: %w", err)
	}
	x, err := Parse(data)
	if err != nil {
		return nil, err
	}
	w.gen = 1
	x.gen = 1
	w.last = data
	w.cur.Store(x)

	w.fw, err = filewatch.New(filewatch.Config{
		Paths:    []string{path},
		Debounce: w.debounce,
		Reload:   func() { _ = w.Reload() },
		OnError: func(err error) {
			w.log.LogAttrs(context.Background(), slog.LevelWarn, "abac policy watch error",
				slog.String("path", path), slog.String("err", err.Error()))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("abac: %w", err)
	}
	w.log.LogAttrs(context.Background(), slog.LevelInfo, "abac policy loaded",
		slog.String("path", path), slog.Uint64("generation", 1), slog.Int("rules", len(x.spec.Rules)))
	return w, nil
}

// Current returns the policy in force.
func (w *Watcher) Current() *Policy { return w.cur.Load() }

// Authorize decides with the policy in force; see [Policy.Authorize].
func (w *Watcher) Authorize(ctx context.Context, p *auth.Principal, a auth.Action) auth.Decision {
	return w.cur.Load().Authorize(ctx, p, a)
}

// Explain explains a decision of the policy in force; see [Policy.Explain].
func (w *Watcher) Explain(p *auth.Principal, a auth.Action) Explanation {
	return w.cur.Load().Explain(p, a)
}

// Generation returns the generation of the policy in force: 1 after the
// first load, one more after each change.
func (w *Watcher) Generation() uint64 { return w.cur.Load().gen }

// Err returns why the last reload failed, or nil when the policy in force
// was loaded from the file's current content.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Reload reads the file now, as a change event would. It returns the error
// that kept the last good policy in force, or nil (also when the content
// has not changed).
func (w *Watcher) Reload() error {
	x, err := w.reload()
	if err != nil {
		w.log.LogAttrs(context.Background(), slog.LevelError, "abac policy rejected; the last good policy stays in force",
			slog.String("path", w.path), slog.Uint64("generation", w.Generation()), slog.String("err", err.Error()))
		if w.onError != nil {
			w.onError(err)
		}
		return err
	}
	if x != nil {
		w.log.LogAttrs(context.Background(), slog.LevelInfo, "abac policy reloaded",
			slog.String("path", w.path), slog.Uint64("generation", x.gen), slog.Int("rules", len(x.spec.Rules)))
		if w.onChange != nil {
			w.onChange(x)
		}
	}
	return nil
}

// reload returns the new policy, nil when nothing changed, or the error.
func (w *Watcher) reload() (*Policy, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	data, err := os.ReadFile(w.path)
	if err != nil {
		w.err = fmt.Errorf("abac: %w", err)
		return nil, w.err
	}
	if bytes.Equal(data, w.last) {
		w.err = nil
		return nil, nil
	}
	x, err := Parse(data)
	if err != nil {
		w.err = err
		return nil, err
	}
	w.gen++
	x.gen = w.gen
	w.last = data
	w.err = nil
	w.cur.Store(x)
	return x, nil
}

// Close stops watching. It waits for a reload in progress (with its
// OnChange or OnError) to end, and none starts after it returns; do not call
// it from those callbacks. The policy in force stays usable.
func (w *Watcher) Close() error { return w.fw.Close() }
