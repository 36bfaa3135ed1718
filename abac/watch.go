package abac

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/internal/filewatch"
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
	// policy is in place. Reloads wait while it runs. To re-check live
	// sessions, give the Watcher to the Manager as an auth.Watch instead
	// (see [Watcher.Notify]): the Manager then subscribes itself.
	OnChange func(p *Policy)
	// OnError is called, on the watcher's goroutine, when a changed file
	// cannot be read or compiled; the last good policy stays in force.
	OnError func(err error)
	// Observer, when set, is told of each load and rejected file
	// (auth.ComponentPolicy).
	Observer auth.Observer
	// Name names every policy loaded in its decisions
	// (auth.Decision.Policy), as [ParseNamed] does.
	Name string
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
	f *filewatch.File[*Policy]
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
	f, err := filewatch.NewFile(filewatch.FileConfig[*Policy]{
		Path:     cfg.Path,
		Debounce: cmp.Or(cfg.Debounce, DefaultDebounce),
		Parse: func(data []byte, gen uint64) (*Policy, error) {
			x, err := Parse(data)
			if err != nil {
				return nil, err
			}
			x.gen, x.name = gen, cfg.Name
			return x, nil
		},
		Prefix:   "abac",
		What:     "abac policy",
		Describe: func(x *Policy) slog.Attr { return slog.Int("rules", len(x.spec.Rules)) },
		Logger:   cfg.Logger,
		OnChange: cfg.OnChange,
		OnError:  cfg.OnError,

		Observer:  cfg.Observer,
		Component: auth.ComponentPolicy,
	})
	if err != nil {
		return nil, err
	}
	return &Watcher{f: f}, nil
}

// Current returns the policy in force.
func (w *Watcher) Current() *Policy { return w.f.Current() }

// Authorize decides with the policy in force; see [Policy.Authorize].
func (w *Watcher) Authorize(ctx context.Context, p *auth.Principal, a auth.Action) auth.Decision {
	return w.f.Current().Authorize(ctx, p, a)
}

// Explain explains a decision of the policy in force; see [Policy.Explain].
func (w *Watcher) Explain(p *auth.Principal, a auth.Action) Explanation {
	return w.f.Current().Explain(p, a)
}

// Generation returns the generation of the policy in force: 1 after the
// first load, one more after each change.
func (w *Watcher) Generation() uint64 { return w.f.Current().gen }

// Err returns why the last reload failed, or nil when the policy in force
// was loaded from the file's current content.
func (w *Watcher) Err() error { return w.f.Err() }

// Reload reads the file now, as a change event would. It returns the error
// that kept the last good policy in force, or nil (also when the content
// has not changed).
func (w *Watcher) Reload() error { return w.f.Reload() }

// Notify calls fn after each policy change in force (see [auth.Notifier]).
// Give the Watcher to an [auth.Manager] as a watch, and the Manager
// re-checks every live session when the policy changes:
//
//	auth.Watch{Name: "abac policy", Source: w, Check: auth.CheckConnect(w)}
func (w *Watcher) Notify(fn func()) (cancel func()) { return w.f.Notify(fn) }

// Close stops watching. It waits for a reload in progress (with its
// OnChange or OnError) to end, and none starts after it returns; do not call
// it from those callbacks. The policy in force stays usable.
func (w *Watcher) Close() error { return w.f.Close() }
