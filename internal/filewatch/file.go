package filewatch

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

	"github.com/mqttauth/mqttauth/auth"
)

// FileConfig configures a [File].
type FileConfig[T any] struct {
	// Path is the file. Required.
	Path string
	// Debounce is the quiet time before a reload; zero means
	// DefaultDebounce.
	Debounce time.Duration
	// Parse turns the file's content into the value that gen will
	// identify. Its errors are returned and logged as they are, so they
	// carry the caller's package prefix. Required.
	Parse func(data []byte, gen uint64) (T, error)
	// Prefix starts the errors of reading the file ("abac").
	Prefix string
	// What names the value in log records ("abac policy").
	What string
	// Describe gives a log attribute about a value (its size); optional.
	Describe func(T) slog.Attr
	// Logger receives a record per load, reload and rejected file.
	Logger *slog.Logger
	// OnChange and OnError are called on the watcher's goroutine (or
	// Reload's caller) after a changed value is in force, and when a
	// changed file is rejected. Reloads wait while they run.
	OnChange func(T)
	OnError  func(error)
	// Observer, when set, is told of each load (auth.Reload) and rejected
	// file (auth.ReloadFailed) as Component.
	Observer  auth.Observer
	Component auth.Component
}

// File is the last good value parsed from one watched file: it loads the
// file, reloads it when it changes, keeps the value in force when a new
// content does not parse (reporting why), and numbers the values it
// accepts. Unchanged content is not parsed again.
type File[T any] struct {
	cfg  FileConfig[T]
	path string

	cur atomic.Pointer[T]

	mu   sync.Mutex // serialises reloads; guards what follows
	gen  uint64
	err  error
	last []byte // content of the value in force

	w *Watcher

	changed auth.Signal // fired after OnChange
}

// NewFile loads the file and starts watching it. The first load must
// succeed.
func NewFile[T any](cfg FileConfig[T]) (*File[T], error) {
	if cfg.Path == "" || cfg.Parse == nil {
		return nil, errors.New("filewatch: FileConfig.Path and Parse are required")
	}
	if cfg.Debounce < 0 {
		return nil, fmt.Errorf("%s: negative debounce", cfg.Prefix)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Prefix, err)
	}
	f := &File[T]{cfg: cfg, path: path}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Prefix, err)
	}
	v, err := cfg.Parse(data, 1)
	if err != nil {
		return nil, err
	}
	f.gen, f.last = 1, data
	f.cur.Store(&v)
	f.w, err = New(Config{
		Paths:    []string{path},
		Debounce: cfg.Debounce,
		Reload:   func() { _ = f.Reload() },
		OnError: func(err error) {
			cfg.Logger.LogAttrs(context.Background(), slog.LevelWarn, cfg.What+" watch error",
				slog.String("path", path), slog.String("err", err.Error()))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Prefix, err)
	}
	f.log(slog.LevelInfo, cfg.What+" loaded", v, 1)
	f.observe(auth.Reload)
	return f, nil
}

func (f *File[T]) log(level slog.Level, msg string, v T, gen uint64, extra ...slog.Attr) {
	attrs := []slog.Attr{slog.String("path", f.path), slog.Uint64("generation", gen)}
	if f.cfg.Describe != nil {
		attrs = append(attrs, f.cfg.Describe(v))
	}
	f.cfg.Logger.LogAttrs(context.Background(), level, msg, append(attrs, extra...)...)
}

func (f *File[T]) observe(k auth.ComponentEventKind) {
	if f.cfg.Observer != nil {
		f.cfg.Observer.Component(auth.ComponentEvent{Component: f.cfg.Component, Kind: k})
	}
}

// Current returns the value in force.
func (f *File[T]) Current() T { return *f.cur.Load() }

// Generation returns 1 after the first load and one more after each
// accepted change.
func (f *File[T]) Generation() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gen
}

// Err returns why the last reload failed, or nil when the value in force
// was parsed from the file's current content.
func (f *File[T]) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Reload reads the file now, as a change event would. It returns the error
// that kept the last good value in force, or nil (also when the content has
// not changed).
func (f *File[T]) Reload() error {
	v, gen, changed, err := f.reload()
	if err != nil {
		attrs := []slog.Attr{slog.String("path", f.path), slog.Uint64("generation", gen), slog.String("err", err.Error())}
		f.cfg.Logger.LogAttrs(context.Background(), slog.LevelError,
			f.cfg.What+" rejected; the last good version stays in force", attrs...)
		f.observe(auth.ReloadFailed)
		if f.cfg.OnError != nil {
			f.cfg.OnError(err)
		}
		return err
	}
	if changed {
		f.log(slog.LevelInfo, f.cfg.What+" reloaded", v, gen)
		f.observe(auth.Reload)
		if f.cfg.OnChange != nil {
			f.cfg.OnChange(v)
		}
		f.changed.Fire()
	}
	return nil
}

// Notify calls fn after each change in force, after OnChange; see
// [auth.Notifier].
func (f *File[T]) Notify(fn func()) (cancel func()) { return f.changed.Notify(fn) }

// reload returns the new value and whether there is one, the generation in
// force, and the error.
func (f *File[T]) reload() (v T, gen uint64, changed bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, err := os.ReadFile(f.path)
	if err != nil {
		f.err = fmt.Errorf("%s: %w", f.cfg.Prefix, err)
		return v, f.gen, false, f.err
	}
	if bytes.Equal(data, f.last) {
		f.err = nil
		return v, f.gen, false, nil
	}
	if v, err = f.cfg.Parse(data, f.gen+1); err != nil {
		f.err = err
		return v, f.gen, false, err
	}
	f.gen++
	f.last, f.err = data, nil
	f.cur.Store(&v)
	return v, f.gen, true, nil
}

// Close stops watching. It waits for a reload in progress (with its
// OnChange or OnError) to end, and none starts after it returns; do not call
// it from those callbacks. The value in force stays usable.
func (f *File[T]) Close() error { return f.w.Close() }
