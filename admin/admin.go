package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultAddr is the loopback address the admin handler is served on by
// default: metrics and profiles are not for the clients' network.
const DefaultAddr = "127.0.0.1:9090"

// ErrNotReady is what a Gate's check returns before it is opened.
var ErrNotReady = errors.New("admin: not ready")

// Check is one named readiness check.
type Check struct {
	// Name labels the check in /readyz ("truststore").
	Name string
	// Check returns nil when ready, or why not. It must be fast.
	Check func(ctx context.Context) error
}

// Config configures the handler.
type Config struct {
	// Metrics serves /metrics; nil leaves it out (404).
	Metrics http.Handler
	// Checks are the readiness checks of /readyz.
	Checks []Check
	// EnablePprof mounts /debug/pprof/. Off by default: profiles reveal
	// the program's internals and cost CPU.
	EnablePprof bool
	// CheckTimeout bounds one /readyz request; zero means 5 s.
	CheckTimeout time.Duration
}

// New returns the admin handler.
func New(cfg Config) (http.Handler, error) {
	for i, c := range cfg.Checks {
		if c.Name == "" || c.Check == nil {
			return nil, fmt.Errorf("admin: Checks[%d] needs a Name and a Check", i)
		}
	}
	if cfg.CheckTimeout == 0 {
		cfg.CheckTimeout = 5 * time.Second
	}
	mux := http.NewServeMux()
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	checks := append([]Check(nil), cfg.Checks...)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), cfg.CheckTimeout)
		defer cancel()
		_, verbose := r.URL.Query()["verbose"]
		var b strings.Builder
		ready := true
		for _, c := range checks {
			if err := c.Check(ctx); err != nil {
				ready = false
				fmt.Fprintf(&b, "[-] %s: %v\n", c.Name, err)
			} else if verbose {
				fmt.Fprintf(&b, "[+] %s ok\n", c.Name)
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		} else {
			b.WriteString("ok\n")
		}
		_, _ = w.Write([]byte(b.String()))
	})
	if cfg.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux, nil
}

// Gate is a readiness check that fails until it is opened: for a source
// that must load once before the broker takes clients.
type Gate struct {
	name string
	open atomic.Bool
}

// NewGate returns a closed Gate named name.
func NewGate(name string) *Gate { return &Gate{name: name} }

// Open marks the source loaded.
func (g *Gate) Open() { g.open.Store(true) }

// Check returns the Gate as a Check.
func (g *Gate) Check() Check {
	return Check{Name: g.name, Check: func(context.Context) error {
		if !g.open.Load() {
			return fmt.Errorf("%w: %s has never loaded", ErrNotReady, g.name)
		}
		return nil
	}}
}

// Server is a running admin server.
type Server struct {
	srv *http.Server
	ln  net.Listener
	err chan error
}

// Listen serves h on addr (DefaultAddr when empty) until Shutdown. The
// server has read-header and idle timeouts.
func Listen(addr string, h http.Handler) (*Server, error) {
	if addr == "" {
		addr = DefaultAddr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	s := &Server{
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute},
		ln:  ln,
		err: make(chan error, 1),
	}
	go func() { s.err <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops the server gracefully, waiting for requests in flight
// until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if serr := <-s.err; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	return nil
}
