package authserver

import (
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// User is an entry of the user table.
type User struct {
	// Password is compared in constant time with the CONNECT password.
	Password string
	// Attributes are returned for authorization.
	Attributes map[string]string
	// Lifetime, when positive, makes every Pass expire that long after the
	// request.
	Lifetime time.Duration
}

// Config configures a Handler.
type Config struct {
	// Users maps user names to users.
	Users map[string]User
	// TokenMethod is the enhanced authentication method whose data is a
	// token of Tokens; empty disables tokens.
	TokenMethod string
	// Tokens maps tokens to user names of Users.
	Tokens map[string]string
	// Versions are the API versions served; nil means ["0.5.0"].
	Versions []string
	// Now is the time source; nil means time.Now.
	Now func() time.Time
}

// Mode selects how the Handler answers.
type Mode int32

// The modes.
const (
	// Normal authenticates from the tables.
	Normal Mode = iota
	// DenyAll answers 403 with reason 0x87 to everything.
	DenyAll
	// Unsupported answers 422 to every version.
	Unsupported
	// Hang never answers: the request waits until the client gives up
	// or the server stops.
	Hang
	// InternalError answers 500.
	InternalError
)

// Handler is the http.Handler of the API. Its tables can change while it
// serves.
type Handler struct {
	mu       sync.RWMutex
	cfg      Config
	mode     atomic.Int32
	requests atomic.Int64
	stop     chan struct{}
	stopOnce sync.Once
}

// NewHandler returns a Handler serving cfg.
func NewHandler(cfg Config) *Handler {
	if cfg.Versions == nil {
		cfg.Versions = []string{"0.5.0"}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Handler{cfg: cfg, stop: make(chan struct{})}
}

// SetMode switches how the Handler answers.
func (h *Handler) SetMode(m Mode) { h.mode.Store(int32(m)) }

// Requests returns how many requests the Handler has received.
func (h *Handler) Requests() int64 { return h.requests.Load() }

// Replace swaps the whole user and token tables (and the token method and
// versions) for cfg's: users absent from cfg can no longer authenticate.
func (h *Handler) Replace(cfg Config) {
	if cfg.Versions == nil {
		cfg.Versions = []string{"0.5.0"}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if cfg.Now == nil {
		cfg.Now = h.cfg.Now
	}
	h.cfg = cfg
}

// SetUser adds or replaces a user.
func (h *Handler) SetUser(name string, u User) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cfg.Users == nil {
		h.cfg.Users = map[string]User{}
	}
	h.cfg.Users[name] = u
}

// SetToken maps token to a user name.
func (h *Handler) SetToken(token, user string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cfg.Tokens == nil {
		h.cfg.Tokens = map[string]string{}
	}
	h.cfg.Tokens[token] = user
}

// release ends every hanging request.
func (h *Handler) release() { h.stopOnce.Do(func() { close(h.stop) }) }

type request struct {
	Type                   string  `json:"type"`
	Username               *string `json:"username"`
	Password               *string `json:"password"`
	Certs                  string  `json:"certs"`
	EnhancedAuthentication *struct {
		Method string `json:"method"`
		Data   string `json:"data"`
	} `json:"enhancedAuthentication"`
}

// ServeHTTP implements the API.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.requests.Add(1)
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch Mode(h.mode.Load()) {
	case DenyAll:
		writeJSON(w, http.StatusForbidden, map[string]any{"reason": 0x87, "message": "server denies all clients"})
		return
	case Unsupported:
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"supportedVersions": []string{"9.9.9"}})
		return
	case Hang:
		select {
		case <-r.Context().Done():
		case <-h.stop:
		}
		return
	case InternalError:
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	if v := r.URL.Query().Get("api-version"); !slices.Contains(h.cfg.Versions, v) {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"supportedVersions": h.cfg.Versions})
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, "content type must be application/json", http.StatusBadRequest)
		return
	}
	var req request
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		http.Error(w, "malformed request: "+err.Error(), http.StatusBadRequest)
		return
	}
	user, reason, err := h.authenticate(&req)
	if err != nil {
		writeJSON(w, http.StatusForbidden, map[string]any{"reason": reason, "message": err.Error()})
		return
	}
	resp := map[string]any{"attributes": nonNil(user.Attributes)}
	if user.Lifetime > 0 {
		resp["expiry"] = h.cfg.Now().Add(user.Lifetime).UTC().Format(time.RFC3339)
	}
	writeJSON(w, http.StatusOK, resp)
}

func (h *Handler) authenticate(req *request) (User, int, error) {
	if ea := req.EnhancedAuthentication; ea != nil && h.cfg.TokenMethod != "" && ea.Method == h.cfg.TokenMethod {
		token, err := base64.StdEncoding.DecodeString(ea.Data)
		if err != nil {
			return User{}, 0x87, errors.New("token is not base64")
		}
		name, ok := h.cfg.Tokens[string(token)]
		user, known := h.cfg.Users[name]
		if !ok || !known {
			return User{}, 0x87, errors.New("unknown token")
		}
		return user, 0, nil
	}
	switch req.Type {
	case "connect":
	case "auth":
		return User{}, 0x87, errors.New("re-authentication needs a token")
	default:
		return User{}, 0x87, fmt.Errorf("unknown request type %q", req.Type)
	}
	if req.Username == nil || req.Password == nil {
		return User{}, 0x87, errors.New("no credentials")
	}
	pw, err := base64.StdEncoding.DecodeString(*req.Password)
	if err != nil {
		return User{}, 0x86, errors.New("password is not base64")
	}
	user, ok := h.cfg.Users[*req.Username]
	if !ok || subtle.ConstantTimeCompare(pw, []byte(user.Password)) != 1 {
		return User{}, 0x86, errors.New("bad user name or password")
	}
	return user, 0, nil
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Server serves a Handler over HTTPS on one address, and can go down and
// come back on it.
type Server struct {
	h    *Handler
	tls  *tls.Config
	addr string

	mu  sync.Mutex
	srv *http.Server
	wg  sync.WaitGroup
}

// Start listens on addr ("127.0.0.1:0" picks a port) and serves h with
// tlsConfig, which must hold the server certificate.
func Start(addr string, tlsConfig *tls.Config, h *Handler) (*Server, error) {
	if tlsConfig == nil {
		return nil, errors.New("authserver: a TLS configuration is required: the API is HTTPS only")
	}
	s := &Server{h: h, tls: tlsConfig}
	if err := s.listen(addr); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("authserver: %w", err)
	}
	s.addr = ln.Addr().String()
	srv := &http.Server{Handler: s.h, TLSConfig: s.tls.Clone(), ReadHeaderTimeout: 10 * time.Second}
	s.srv = srv
	s.wg.Go(func() { _ = srv.ServeTLS(ln, "", "") })
	return nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// URL returns the server's endpoint, https://ADDR/.
func (s *Server) URL() string { return "https://" + s.Addr() + "/" }

// Handler returns the server's Handler.
func (s *Server) Handler() *Handler { return s.h }

// Down stops the server: the listener and every connection close, so
// clients see connection refused. Up brings it back on the same address.
func (s *Server) Down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	_ = s.srv.Close()
	s.wg.Wait()
	s.srv = nil
}

// Up serves again on the address of Start after Down.
func (s *Server) Up() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	return s.listen(s.addr)
}

// Close stops the server for good and ends hanging requests.
func (s *Server) Close() {
	s.h.release()
	s.Down()
}
