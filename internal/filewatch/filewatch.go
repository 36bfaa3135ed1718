// Package filewatch tells its owner when files it reads may have changed:
// it watches their directories with fsnotify, waits until the events have
// been quiet for a while, and calls one function. What to read, how to
// validate it, and what to keep when it is bad stay with the caller
// (truststore, abac, scramauth).
//
// A file is watched through its parent directory, never directly, so that
// the ways configuration really changes are all seen: a write in place, an
// editor's or a tool's write-and-rename over the file, and the Kubernetes
// atomic writer of a mounted ConfigMap or Secret, where the file is a link
// through "..data" and an update renames a new "..data" link over the old
// one. Events in that directory count when they name the file itself or a
// name that begins with ".." (the writer's "..data", "..data_tmp" and
// timestamped directories); other files in the directory are ignored, so
// that a busy neighbour (a log file) neither costs reloads nor postpones
// them forever. When the file is itself a symbolic link, every event in its
// directory counts, since the link may point at a sibling that is edited in
// place. A path that is a directory is watched itself, and every event in
// it counts. A link to a file in another directory is seen when the link
// changes, not when its target does.
//
// The Reload function runs on the watcher's goroutine, one call at a time.
// Events that arrive while it runs are not lost: they start a new quiet
// period, and Reload is called again after it. A watch error (for example
// an overflow of the kernel's event queue, which loses events) is passed to
// OnError and also leads to a Reload, since a change may have been missed.
package filewatch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is the quiet time used when Config.Debounce is zero.
const DefaultDebounce = 100 * time.Millisecond

// Config configures a [Watcher].
type Config struct {
	// Paths are the files and directories to watch. Required.
	Paths []string
	// Debounce is how long the events must be quiet before Reload is
	// called, so that a burst (truncate then write, a rename, the several
	// steps of a Kubernetes update) makes one call. Zero or less means
	// DefaultDebounce.
	Debounce time.Duration
	// Reload is called, on the watcher's goroutine, after relevant events
	// have been quiet for Debounce. It must not call Close. Required.
	Reload func()
	// OnError, when set, is called on the watcher's goroutine with each
	// error that fsnotify reports.
	OnError func(error)
}

// Watcher watches files until Close.
type Watcher struct {
	fsw      *fsnotify.Watcher
	debounce time.Duration
	reload   func()
	onError  func(error)
	dirs     map[string]dirWatch

	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// dirWatch says which events in one watched directory count.
type dirWatch struct {
	all   bool            // a watched path itself, or beside a watched link
	names map[string]bool // else: the base names of the watched files in it
}

// New starts watching cfg.Paths. A path that is a directory (symbolic
// links followed) is watched itself; any other path, also one that does
// not exist yet, through its parent directory, which must exist.
func New(cfg Config) (*Watcher, error) {
	if len(cfg.Paths) == 0 {
		return nil, errors.New("filewatch: no paths")
	}
	if cfg.Reload == nil {
		return nil, errors.New("filewatch: Config.Reload is required")
	}
	w := &Watcher{
		debounce: cfg.Debounce,
		reload:   cfg.Reload,
		onError:  cfg.OnError,
		dirs:     make(map[string]dirWatch),
		done:     make(chan struct{}),
	}
	if w.debounce <= 0 {
		w.debounce = DefaultDebounce
	}
	var order []string // directories in the order of Paths
	for _, p := range cfg.Paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("watch: %w", err)
		}
		dir, name := abs, ""
		if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
			dir, name = filepath.Dir(abs), filepath.Base(abs)
		}
		d, seen := w.dirs[dir]
		if !seen {
			order = append(order, dir)
			d.names = make(map[string]bool)
		}
		if fi, err := os.Lstat(abs); name == "" || err == nil && fi.Mode()&os.ModeSymlink != 0 {
			d.all = true // a directory, or a link that may point at a sibling
		} else {
			d.names[name] = true
		}
		w.dirs[dir] = d
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	for _, dir := range order {
		if err := fsw.Add(dir); err != nil {
			_ = fsw.Close()
			return nil, fmt.Errorf("watch %s: %w", dir, err)
		}
	}
	w.fsw = fsw
	w.wg.Add(1)
	go w.run()
	return w, nil
}

// Close stops watching. It waits for a Reload that is running to return,
// and no Reload or OnError starts after Close returns. Every call after the
// first returns nil, once the watcher has stopped.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() {
		close(w.done)
		w.closeErr = w.fsw.Close()
		w.wg.Wait()
	})
	return w.closeErr
}

// relevant reports whether an event on name can change what the caller
// reads.
func (w *Watcher) relevant(name string) bool {
	if _, ok := w.dirs[name]; ok {
		return true // a watched directory itself was removed or moved
	}
	d, ok := w.dirs[filepath.Dir(name)]
	if !ok {
		return false
	}
	base := filepath.Base(name)
	return d.all || d.names[base] || strings.HasPrefix(base, "..")
}

func (w *Watcher) run() {
	defer w.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			if w.relevant(ev.Name) {
				t.Reset(w.debounce)
			}
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			if w.closed() {
				return
			}
			if w.onError != nil {
				w.onError(err)
			}
			t.Reset(w.debounce) // events may have been lost
		case <-t.C:
			if w.closed() {
				return // select chose the timer although Close had begun
			}
			w.reload()
		}
	}
}

func (w *Watcher) closed() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}
