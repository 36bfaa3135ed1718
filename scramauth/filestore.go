package scramauth

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/mqttauth/mqttauth/auth"
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
	// of users is in place. Reloads wait while it runs. To disconnect the
	// removed users, give the FileStore to the Manager as an auth.Watch
	// instead (see [FileStore.Notify]).
	OnChange func(u *Users)
	// OnError is called, on the watcher's goroutine, when a changed file
	// cannot be read or parsed; the last good users stay in force.
	OnError func(err error)
	// Observer, when set, is told of each load and rejected file
	// (auth.ComponentUsers).
	Observer auth.Observer
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
	f *filewatch.File[*Users]
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
	f, err := filewatch.NewFile(filewatch.FileConfig[*Users]{
		Path:     path,
		Debounce: cmp.Or(cfg.Debounce, DefaultDebounce),
		Parse: func(data []byte, _ uint64) (*Users, error) {
			u, err := ParseUsers(data)
			if err != nil {
				return nil, fmt.Errorf("scramauth: %s: %w", path, err)
			}
			return u, nil
		},
		Prefix:   "scramauth",
		What:     "scram users file",
		Describe: func(u *Users) slog.Attr { return slog.Int("users", u.Len()) },
		Logger:   cfg.Logger,
		OnChange: cfg.OnChange,
		OnError:  cfg.OnError,

		Observer:  cfg.Observer,
		Component: auth.ComponentUsers,
	})
	if err != nil {
		return nil, err
	}
	return &FileStore{f: f}, nil
}

// Lookup looks the user up in the users in force.
func (s *FileStore) Lookup(mech Mechanism, username string) (Credential, bool) {
	return s.f.Current().Lookup(mech, username)
}

// Current returns the users in force.
func (s *FileStore) Current() *Users { return s.f.Current() }

// Generation returns 1 after the first load and one more after each change.
func (s *FileStore) Generation() uint64 { return s.f.Generation() }

// Err returns why the last reload failed, or nil when the users in force were
// loaded from the file's current content.
func (s *FileStore) Err() error { return s.f.Err() }

// Reload reads the file now, as a change event would. It returns the error
// that kept the last good users in force, or nil (also when the content has
// not changed).
func (s *FileStore) Reload() error { return s.f.Reload() }

// Notify calls fn after each change of the users in force (see
// [auth.Notifier]). Give the FileStore to an [auth.Manager] as a watch, and
// the Manager disconnects the removed users:
//
//	auth.Watch{Name: "scram users", Source: s, Check: scramauth.CheckStore(s)}
func (s *FileStore) Notify(fn func()) (cancel func()) { return s.f.Notify(fn) }

// Close stops watching. It waits for a reload in progress (with its
// OnChange or OnError) to end, and none starts after it returns; do not call
// it from those callbacks. The users in force stay usable.
func (s *FileStore) Close() error { return s.f.Close() }
