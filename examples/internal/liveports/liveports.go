package liveports

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/mqttauth/mqttauth/aioconfig"
)

// StopTimeout bounds the shutdown of one removed port.
const StopTimeout = 10 * time.Second

// Funcs open and close the listener of one port.
type Funcs struct {
	// Start listens on p.Address and serves it, with TLS when p.TLS is
	// set (serve with aioconfig.Broker.TLS(p.Name)), naming the listener
	// p.Name.
	Start func(p *aioconfig.Port) error
	// Stop shuts the listener of the port named name down in order.
	Stop func(ctx context.Context, name string) error
}

// served is what a listener was opened with: a change of either needs a
// new listener.
type served struct {
	address string
	tls     bool
}

// Ports follows the ports of a Broker.
type Ports struct {
	b   *aioconfig.Broker
	f   Funcs
	log *slog.Logger

	mu      sync.Mutex // one Sync at a time
	serving map[string]served

	kick   chan struct{}
	cancel func()
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

// New returns the follower of b's ports; it serves nothing until Sync.
func New(b *aioconfig.Broker, f Funcs, log *slog.Logger) *Ports {
	p := &Ports{b: b, f: f, log: log, serving: map[string]served{}, kick: make(chan struct{}, 1)}
	p.ctx, p.stop = context.WithCancel(context.Background())
	return p
}

// Sync makes the listeners those of the ports in force: it stops the
// removed and changed ones, then starts the new and changed ones. It
// returns the errors of the ports it could not open (they are tried again
// at the next Sync).
func (p *Ports) Sync(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	current := p.b.CurrentPorts()
	want := map[string]served{}
	for _, port := range current {
		want[port.Name] = served{port.Address, port.TLS != nil}
	}
	for name, s := range p.serving {
		if w, ok := want[name]; ok && w == s {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, StopTimeout)
		err := p.f.Stop(sctx, name)
		cancel()
		delete(p.serving, name)
		level := slog.LevelInfo
		if err != nil {
			level = slog.LevelWarn
		}
		p.log.LogAttrs(ctx, level, "port closed", slog.String("listener", name), slog.Any("err", err))
	}
	var errs []error
	for _, port := range current {
		if _, ok := p.serving[port.Name]; ok {
			continue
		}
		if err := p.f.Start(port); err != nil {
			p.log.LogAttrs(ctx, slog.LevelError, "port not opened", slog.String("listener", port.Name), slog.String("address", port.Address), slog.Any("err", err))
			errs = append(errs, err)
			continue
		}
		p.serving[port.Name] = want[port.Name]
	}
	return errors.Join(errs...)
}

// Follow runs Sync after each change of the Broker's ports, on a
// goroutine of its own, until Close.
func (p *Ports) Follow() {
	p.cancel = p.b.Notify(func() {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	})
	p.wg.Go(func() {
		for {
			select {
			case <-p.ctx.Done():
				return
			case <-p.kick:
				_ = p.Sync(p.ctx)
			}
		}
	})
}

// Serving returns the names of the ports served.
func (p *Ports) Serving() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.serving))
	for n := range p.serving {
		out = append(out, n)
	}
	return out
}

// Close stops following (a Sync in progress finishes first); the
// listeners stay open: the program shuts them down.
func (p *Ports) Close() {
	if p.cancel != nil {
		p.cancel()
	}
	p.stop()
	p.wg.Wait()
}
