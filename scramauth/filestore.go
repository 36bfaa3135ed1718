package scramauth

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
)

// DefaultDebounce is how long a [FileStore] waits after the last change event
// before it reloads.
const DefaultDebounce = 100 * time.Millisecond

// FileStoreConfig configures a [FileStore].
type FileStoreConfig struct {
	// Path is the users file, JSON or YAML (see [File]). Required.
	Path string
	// Debounce is how long to wait after the last change event before
	// reloading, so that several writes make one reload. Zero means
	// DefaultDebounce.
	Debounce time.Duration
	// Logger receives a record per reload and per rejected file; nil means
	// slog.Default(). Keys and salts are never logged.
	Logger *slog.Logger
	// OnChange is called, on the watcher's goroutine, after a changed set
	// of users is in place. Disconnect the removed users from it:
	//
	//	OnChange: func(u *scramauth.Users) { m.Recheck(ctx, scramauth.CheckStore(u)) }
	//
	// Reloads wait while it runs.
	OnChange func(u *Users)
	// OnError is called, on the watcher's goroutine, when a changed file
	// cannot be read or parsed; the last good users stay in force.
	OnError func(err error)
}

// FileStore is a [Store] backed by a users file that it reloads in place when
// the file changes.
//
// It watches the file's directory, not the file, so that a Kubernetes Secret
// or ConfigMap update (an atomic swap of the ..data symlink) is seen, as is
// the write-and-rename of the scramuser command or an editor. Reloads are
// debounced; a file whose content has not changed is not reloaded. A file
// that fails to load leaves the last good users in force and is reported to
// the log, to OnError and by Err until a good file is loaded. Lookups read
// an immutable snapshot behind an atomic pointer: no lock per connection.
type FileStore struct {
	path     string
	debounce time.Duration
	log      *slog.Logger
	onChange func(*Users)
	onError  func(error)

	cur atomic.Pointer[Users]

	mu   sync.Mutex // serialises reloads; guards what follows
	gen  uint64
	err  error
	last []byte // content of the last good file

	fw *filewatch.Watcher
}

var _ Store = (*FileStore)(nil)

// NewFileStore loads the users file and starts watching it. The first load
// must succeed. Close stops the watcher.
func NewFileStore(cfg FileStoreConfig) (*FileStore, error) {
	if cfg.Path == "" {
		return nil, errors.New("scramauth: FileStoreConfig.Path is required")
	}
	if cfg.Debounce < 0 {
		return nil, errors.New("scramauth: negative FileStoreConfig.Debounce")
	}
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("scramauth: %w", err)
	}
	s := &FileStore{
		path:     path,
		debounce: cfg.Debounce,
		log:      cfg.Logger,
		onChange: cfg.OnChange,
		onError:  cfg.OnError,
	}
	if s.debounce == 0 {
		s.debounce = DefaultDebounce
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("scramauth: %w", err)
	}
	u, err := ParseUsers(data)
	if err != nil {
		return nil, fmt.Errorf("scramauth: %s: %w", path, err)
	}
	s.gen, s.last = 1, data
	s.cur.Store(u)

	s.fw, err = filewatch.New(filewatch.Config{
		Paths:    []string{path},
		Debounce: s.debounce,
		Reload:   func() { _ = s.Reload() },
		OnError: func(err error) {
			s.log.LogAttrs(context.Background(), slog.LevelWarn, "scram users watch error",
				slog.String("path", path), slog.String("err", err.Error()))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("scramauth: %w", err)
	}
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "scram users loaded",
		slog.String("path", path), slog.Uint64("generation", 1), slog.Int("users", u.Len()))
	return s, nil
}

// Lookup looks the user up in the users in force.
func (s *FileStore) Lookup(mech Mechanism, username string) (Credential, bool) {
	return s.cur.Load().Lookup(mech, username)
}

// Current returns the users in force.
func (s *FileStore) Current() *Users { return s.cur.Load() }

// Generation returns 1 after the first load and one more after each change.
func (s *FileStore) Generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// Err returns why the last reload failed, or nil when the users in force were
// loaded from the file's current content.
func (s *FileStore) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Reload reads the file now, as a change event would. It returns the error
// that kept the last good users in force, or nil (also when the content has
// not changed).
func (s *FileStore) Reload() error {
	u, gen, err := s.reload()
	if err != nil {
		s.log.LogAttrs(context.Background(), slog.LevelError, "scram users file rejected; the last good users stay in force",
			slog.String("path", s.path), slog.Uint64("generation", gen), slog.String("err", err.Error()))
		if s.onError != nil {
			s.onError(err)
		}
		return err
	}
	if u != nil {
		s.log.LogAttrs(context.Background(), slog.LevelInfo, "scram users reloaded",
			slog.String("path", s.path), slog.Uint64("generation", gen), slog.Int("users", u.Len()))
		if s.onChange != nil {
			s.onChange(u)
		}
	}
	return nil
}

// reload returns the new users (nil when nothing changed), the generation in
// force, and the error.
func (s *FileStore) reload() (*Users, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := os.ReadFile(s.path)
	if err != nil {
		s.err = fmt.Errorf("scramauth: %w", err)
		return nil, s.gen, s.err
	}
	if bytes.Equal(data, s.last) {
		s.err = nil
		return nil, s.gen, nil
	}
	u, err := ParseUsers(data)
	if err != nil {
		s.err = fmt.Errorf("scramauth: %s: %w", s.path, err)
		return nil, s.gen, s.err
	}
	s.gen++
	s.last = data
	s.err = nil
	s.cur.Store(u)
	return u, s.gen, nil
}

// Close stops watching. It waits for a reload in progress (with its
// OnChange or OnError) to end, and none starts after it returns; do not call
// it from those callbacks. The users in force stay usable.
func (s *FileStore) Close() error { return s.fw.Close() }
