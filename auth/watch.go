package auth

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// DefaultRecheckTimeout bounds one re-check started by a [Watch] when its
// Timeout is zero.
const DefaultRecheckTimeout = 30 * time.Second

// Notifier is a source that reloads in place (a truststore, a CRL set, a
// policy file, a users file) and says when it changed. It is the one
// change signal of every reloadable source in this module, in the shape of
// go-spiffe's sources: subscribe, hear of each change, cancel.
type Notifier interface {
	// Notify calls fn after each change that is in force, in order, on
	// the source's own goroutine; a failed reload (the last good content
	// kept) calls nothing. fn must not block for long and must not call
	// back into the source. The returned function stops the calls.
	Notify(fn func()) (cancel func())
}

// Watch ties a source's change signal to the check every live session must
// pass after the source changed. A [Manager] built with watches
// (Config.Watches) subscribes to each source itself, so a change can never
// reach a Manager that does not exist yet.
type Watch struct {
	// Name names the source in logs ("truststore", "abac policy").
	Name string
	// Source signals the changes. Required.
	Source Notifier
	// Check re-checks one live session after a change. Required.
	Check CheckFunc
	// Timeout bounds one re-check of all sessions; zero means
	// DefaultRecheckTimeout.
	Timeout time.Duration
}

// Signal is a ready-made [Notifier] for a source to embed or hold: the
// source calls Fire after each change. The zero value is ready to use.
type Signal struct {
	mu   sync.Mutex
	subs map[int]func()
	next int
}

// Notify implements Notifier.
func (s *Signal) Notify(fn func()) (cancel func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs == nil {
		s.subs = make(map[int]func())
	}
	id := s.next
	s.next++
	s.subs[id] = fn
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.subs, id)
	}
}

// Fire calls every subscriber, in the order they subscribed.
func (s *Signal) Fire() {
	s.mu.Lock()
	fns := make([]func(), 0, len(s.subs))
	for id := 0; id < s.next; id++ {
		if fn, ok := s.subs[id]; ok {
			fns = append(fns, fn)
		}
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// watcher runs the re-checks of the Manager's watches.
type watcher struct {
	cancel context.CancelFunc
	stops  []func()
	wg     sync.WaitGroup
	once   sync.Once
}

func validateWatches(ws []Watch) error {
	for i, w := range ws {
		if w.Source == nil || w.Check == nil {
			return fmt.Errorf("auth: watch %d (%s): Source and Check are required", i, w.Name)
		}
		if w.Timeout < 0 {
			return fmt.Errorf("auth: watch %d (%s): negative Timeout", i, w.Name)
		}
	}
	return nil
}

// startWatches subscribes m to Config.Watches.
func (m *Manager) startWatches(ws []Watch) {
	if len(ws) > 0 {
		m.watch = m.runWatches(ws)
	}
}

// Watch subscribes m to more sources once it is built, as Config.Watches
// does when it is: each change of a source re-checks the live sessions
// with the watch's Check. It is for a source that exists only after the
// Manager; prefer Config.Watches, which Close stops. The returned function
// unsubscribes, cancels a re-check in progress and waits for it to end;
// it is safe to call more than once.
func (m *Manager) Watch(ws ...Watch) (stop func(), err error) {
	if err := validateWatches(ws); err != nil {
		return nil, err
	}
	return m.runWatches(ws).stop, nil
}

// runWatches subscribes m to each watch's source. Each source gets one
// goroutine; changes that arrive during a re-check are coalesced into one
// more re-check.
func (m *Manager) runWatches(ws []Watch) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{cancel: cancel}
	for _, wt := range ws {
		kick := make(chan struct{}, 1)
		w.stops = append(w.stops, wt.Source.Notify(func() {
			select {
			case kick <- struct{}{}:
			default:
			}
		}))
		timeout := wt.Timeout
		if timeout == 0 {
			timeout = DefaultRecheckTimeout
		}
		w.wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-kick:
					start := time.Now()
					rctx, rcancel := context.WithTimeout(ctx, timeout)
					rep := m.Recheck(rctx, wt.Check)
					rcancel()
					// A pass that disconnected nobody is routine (satauth's
					// sweep runs one every 30 s): Debug, not Info.
					level := slog.LevelDebug
					if rep.Disconnected > 0 {
						level = slog.LevelInfo
					}
					m.log.LogAttrs(ctx, level, "auth: re-checked sessions after a change",
						slog.String("source", wt.Name),
						slog.Int("checked", rep.Checked),
						slog.Int("disconnected", rep.Disconnected),
						slog.Duration("took", time.Since(start)))
				}
			}
		})
	}
	return w
}

// stop unsubscribes from every source, cancels a re-check in progress and
// waits for it to end, once.
func (w *watcher) stop() {
	w.once.Do(func() {
		for _, stop := range w.stops {
			stop()
		}
		w.cancel()
		w.wg.Wait()
	})
}

// Close stops the Manager's watches (Config.Watches): it unsubscribes from
// every source, cancels a re-check in progress and waits for it to end.
// Live sessions are not touched. Close is safe to call more than once.
func (m *Manager) Close() error {
	if m.watch != nil {
		m.watch.stop()
	}
	return nil
}
