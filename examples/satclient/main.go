// Command satclient is an MQTT v5 client that authenticates with a
// Kubernetes service account token (Authentication Method K8S-SAT), the way
// a workload in a pod talks to a broker that uses satauth.
//
// It reads the token from a file, by default the projected volume path
// /var/run/secrets/tokens/mqtt-token, connects over TLS, and watches the
// file: the kubelet rotates a projected token by swapping the ..data
// symlink of the volume's directory, so the directory is watched, not the
// file. When the token changes, satclient re-authenticates on the same
// connection (AUTH 0x19 with the new token) before the old one expires, and
// logs the broker's answer: AUTH 0x00 (the connection's expiry moves),
// AUTH 0x18 (the broker cannot verify tokens right now: satclient retries
// with backoff and stays connected) or DISCONNECT. A rotation while a
// re-authentication is under way is picked up when it ends.
//
//	satclient -broker mqtt.example:8883 -cafile ca.crt -client-id sensor-1 \
//	    -token-file /var/run/secrets/tokens/mqtt-token -publish sensors/17/temp
//
// A pod spec that projects such a token:
//
//	volumes:
//	  - name: mqtt-token
//	    projected:
//	      sources:
//	        - serviceAccountToken: {path: mqtt-token, audience: aio-mq, expirationSeconds: 86400}
//
// satclient exits with status 1 when the broker refuses it or the
// connection ends, and with 0 on SIGINT or SIGTERM after a DISCONNECT.
// Tokens are never logged; a short hash identifies them.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/fsnotify/fsnotify"
)

// authMethod is the Authentication Method of Kubernetes service account
// tokens.
const authMethod = "K8S-SAT"

// MQTT v5 AUTH reason codes.
const (
	authSuccess  = 0x00
	authContinue = 0x18
	authReauth   = 0x19
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "satclient:", err)
		os.Exit(1)
	}
}

type options struct {
	broker, caFile, tokenFile, clientID, topic string
	interval, debounce, maxBackoff, timeout    time.Duration
	keepAlive                                  uint
	logJSON                                    bool
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("satclient", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var o options
	fs.StringVar(&o.broker, "broker", "localhost:8883", "broker address, host:port (TLS)")
	fs.StringVar(&o.caFile, "cafile", "", "PEM file of the CA that signed the broker's certificate (default: the system roots)")
	fs.StringVar(&o.tokenFile, "token-file", "/var/run/secrets/tokens/mqtt-token", "service account token file (a projected volume path)")
	fs.StringVar(&o.clientID, "client-id", "", "MQTT client id (default: the host name)")
	fs.StringVar(&o.topic, "publish", "", "topic to publish to every -interval (QoS 1); none when empty")
	fs.DurationVar(&o.interval, "interval", 5*time.Second, "publish interval")
	fs.DurationVar(&o.debounce, "debounce", 500*time.Millisecond, "wait this long after the last change of the token file before re-authenticating")
	fs.DurationVar(&o.maxBackoff, "max-backoff", 10*time.Second, "longest wait between re-authentication retries after AUTH 0x18")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "timeout of the TLS connection, CONNECT, a publish and the wait for a re-authentication answer")
	fs.UintVar(&o.keepAlive, "keepalive", 30, "MQTT keep alive in seconds")
	fs.BoolVar(&o.logJSON, "log-json", false, "log in JSON rather than text")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.clientID == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("no -client-id and no host name: %w", err)
		}
		o.clientID = h
	}
	if o.keepAlive > 65535 {
		return errors.New("-keepalive exceeds 65535")
	}
	if o.interval <= 0 || o.debounce < 0 || o.maxBackoff <= 0 {
		return errors.New("-interval and -max-backoff must be positive, -debounce not negative")
	}
	var h slog.Handler = slog.NewTextHandler(stdout, nil)
	if o.logJSON {
		h = slog.NewJSONHandler(stdout, nil)
	}
	c := &client{opts: o, log: slog.New(h).With(slog.String("client_id", o.clientID))}
	return c.run(ctx)
}

// client is one connection to the broker.
type client struct {
	opts options
	log  *slog.Logger

	authGen  atomic.Int64 // counts AUTH 0x00 (and the CONNACK)
	deferred atomic.Bool  // an AUTH 0x18 came since the last check

	mu    sync.Mutex
	token []byte // the token last read from the file
}

// readToken reads the token file; it keeps the last good token when the
// file is momentarily missing or empty (during a symlink swap).
func (c *client) readToken() ([]byte, error) {
	b, err := os.ReadFile(c.opts.tokenFile)
	b = bytes.TrimSpace(b)
	if err == nil && len(b) == 0 {
		err = fmt.Errorf("token file %s is empty", c.opts.tokenFile)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if c.token != nil {
			return c.token, err
		}
		return nil, err
	}
	c.token = b
	return b, nil
}

// tokenID is a short hash of a token, for the log.
func tokenID(tok []byte) string {
	sum := sha256.Sum256(tok)
	return hex.EncodeToString(sum[:4])
}

func (c *client) dial(ctx context.Context) (net.Conn, error) {
	host, _, err := net.SplitHostPort(c.opts.broker)
	if err != nil {
		return nil, fmt.Errorf("-broker: %w", err)
	}
	conf := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if c.opts.caFile != "" {
		pem, err := os.ReadFile(c.opts.caFile)
		if err != nil {
			return nil, fmt.Errorf("-cafile: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-cafile: no PEM certificate in %s", c.opts.caFile)
		}
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: c.opts.timeout}, Config: conf}
	conn, err := d.DialContext(ctx, "tcp", c.opts.broker)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", c.opts.broker, err)
	}
	return conn, nil
}

func (c *client) run(ctx context.Context) error {
	tok, err := c.readToken()
	if err != nil {
		return err
	}
	// Watch before connecting, so that no rotation is missed.
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(c.opts.tokenFile)); err != nil {
		return fmt.Errorf("watching %s: %w", filepath.Dir(c.opts.tokenFile), err)
	}

	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	// ctx of the whole connection: cancelled when run returns, it stops a
	// pending re-authentication and the AUTH 0x18 backoff.
	connCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	ended := make(chan error, 1)
	end := func(err error) {
		select {
		case ended <- err:
		default:
		}
	}
	cli := paho.NewClient(paho.ClientConfig{
		Conn:        packets.NewThreadSafeConn(conn),
		AuthHandler: &auther{c: c},
		OnServerDisconnect: func(d *paho.Disconnect) {
			end(fmt.Errorf("disconnected by the broker: %s", describe(d.ReasonCode, disconnectReason(d))))
		},
		OnClientError: func(err error) { end(fmt.Errorf("connection lost: %w", err)) },
	})
	cctx, ccancel := context.WithTimeout(ctx, c.opts.timeout)
	ca, err := cli.Connect(cctx, &paho.Connect{
		ClientID:   c.opts.clientID,
		KeepAlive:  uint16(c.opts.keepAlive),
		CleanStart: true,
		Properties: &paho.ConnectProperties{AuthMethod: authMethod, AuthData: tok},
	})
	ccancel()
	if err != nil {
		_ = conn.Close()
		if ca != nil {
			reason := ""
			if ca.Properties != nil {
				reason = ca.Properties.ReasonString
			}
			c.log.Error("connection refused", slog.String("reason_code", describe(ca.ReasonCode, reason)))
			return fmt.Errorf("CONNACK %s", describe(ca.ReasonCode, reason))
		}
		return fmt.Errorf("CONNECT: %w", err)
	}
	c.log.Info("connected", slog.String("broker", c.opts.broker), slog.String("method", authMethod),
		slog.String("token", tokenID(tok)))

	var tick <-chan time.Time
	if c.opts.topic != "" {
		t := time.NewTicker(c.opts.interval)
		defer t.Stop()
		tick = t.C
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()

	reauthDone := make(chan struct{}, 1)
	reauthing, again := false, false
	reauth := func() {
		if reauthing {
			again = true // once this one ends
			return
		}
		reauthing = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.reauthenticate(connCtx, cli)
			reauthDone <- struct{}{}
		}()
	}
	sent := tokenID(tok)

	for {
		select {
		case <-ctx.Done():
			c.log.Info("disconnecting")
			_ = cli.Disconnect(&paho.Disconnect{ReasonCode: 0})
			return nil
		case err := <-ended:
			c.log.Error("connection ended", slog.String("err", err.Error()))
			return err
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("token file watcher stopped")
			}
			// Any change in the directory: the file itself, or the
			// ..data symlink of a projected volume.
			if ev.Op&(fsnotify.Create|fsnotify.Write|fsnotify.Rename|fsnotify.Remove) != 0 {
				debounce.Reset(c.opts.debounce)
			}
		case err, ok := <-w.Errors:
			if ok {
				c.log.Warn("watching the token file", slog.String("err", err.Error()))
			}
		case <-debounce.C:
			b, err := os.ReadFile(c.opts.tokenFile)
			if err != nil || len(bytes.TrimSpace(b)) == 0 || tokenID(bytes.TrimSpace(b)) == sent {
				continue // unchanged, or mid-swap (a later event follows)
			}
			sent = tokenID(bytes.TrimSpace(b))
			c.log.Info("token file changed", slog.String("token", sent))
			reauth()
		case <-reauthDone:
			reauthing = false
			if again {
				again = false
				reauth()
			}
		case <-tick:
			c.publish(ctx, cli)
		}
	}
}

// reauthenticate sends AUTH 0x19 with the current token and waits for
// the broker's answer. AUTH 0x18 means the broker cannot verify tokens now
// (its API server is unreachable): the auther answers it once, as the
// broker allows, and if no AUTH 0x00 follows within -timeout satclient
// starts again with AUTH 0x19 after a backoff (1 s, doubling up to
// -max-backoff). A DISCONNECT ends the connection, and run with it.
func (c *client) reauthenticate(ctx context.Context, cli *paho.Client) {
	backoff := time.Second
	for {
		tok, _ := c.readToken()
		gen := c.authGen.Load()
		c.log.Info("re-authenticating", slog.String("token", tokenID(tok)))
		actx, cancel := context.WithTimeout(ctx, c.opts.timeout)
		resp, err := cli.Authenticate(actx, &paho.Auth{
			ReasonCode: authReauth,
			Properties: &paho.AuthProperties{AuthMethod: authMethod, AuthData: tok},
		})
		cancel()
		switch {
		case err == nil && resp.Success && resp.ReasonCode == authSuccess:
			c.log.Info("re-authenticated", slog.String("reason_code", describe(resp.ReasonCode, "")), slog.String("token", tokenID(tok)))
			return
		case err == nil:
			reason := ""
			if resp.Properties != nil {
				reason = resp.Properties.ReasonString
			}
			c.log.Error("re-authentication refused", slog.String("reason_code", describe(resp.ReasonCode, reason)))
			return
		case ctx.Err() != nil:
			return
		case c.authGen.Load() != gen:
			// The AUTH 0x00 came after the wait ended.
			c.log.Info("re-authenticated", slog.String("reason_code", describe(authSuccess, "")), slog.String("token", tokenID(tok)))
			return
		case errors.Is(err, context.DeadlineExceeded):
			if c.deferred.Swap(false) {
				c.log.Warn("re-authentication deferred by the broker, retrying", slog.Duration("retry_in", backoff))
			} else {
				c.log.Warn("no answer to re-authentication, retrying", slog.Duration("retry_in", backoff))
			}
		default:
			c.log.Error("re-authentication", slog.String("err", err.Error()))
			return
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, c.opts.maxBackoff)
	}
}

func (c *client) publish(ctx context.Context, cli *paho.Client) {
	pctx, cancel := context.WithTimeout(ctx, c.opts.timeout)
	defer cancel()
	payload := fmt.Sprintf(`{"client":%q,"time":%q}`, c.opts.clientID, time.Now().UTC().Format(time.RFC3339))
	resp, err := cli.Publish(pctx, &paho.Publish{Topic: c.opts.topic, QoS: 1, Payload: []byte(payload)})
	switch {
	case resp != nil:
		level := slog.LevelInfo
		if resp.ReasonCode >= 0x80 {
			level = slog.LevelWarn
		}
		c.log.Log(ctx, level, "published", slog.String("topic", c.opts.topic), slog.String("reason_code", describe(resp.ReasonCode, "")))
	case err != nil:
		c.log.Warn("publish", slog.String("topic", c.opts.topic), slog.String("err", err.Error()))
	}
}

// auther answers the broker's AUTH packets on paho's read loop. K8S-SAT is
// single-step, so an AUTH 0x18 from the broker during a re-authentication
// means "I cannot verify the token now" (satauth with the API server
// unreachable). paho writes whatever Authenticate returns, at once; the
// broker takes an AUTH 0x18 answer as one retry and stays silent if that
// fails too, so the auther answers with the current token and leaves the
// backoff to reauthenticate.
type auther struct {
	c *client
}

// Authenticate is called by paho for each AUTH 0x18 from the broker.
func (a *auther) Authenticate(in *paho.Auth) *paho.Auth {
	c := a.c
	reason := ""
	if in.Properties != nil {
		reason = in.Properties.ReasonString
	}
	c.deferred.Store(true)
	c.log.Warn("broker cannot verify the token now", slog.String("reason_code", describe(in.ReasonCode, reason)))
	tok, _ := c.readToken()
	return &paho.Auth{ReasonCode: authContinue, Properties: &paho.AuthProperties{AuthMethod: authMethod, AuthData: tok}}
}

// Authenticated is called by paho for the success CONNACK and each AUTH
// 0x00.
func (a *auther) Authenticated() { a.c.authGen.Add(1) }

func disconnectReason(d *paho.Disconnect) string {
	if d.Properties == nil {
		return ""
	}
	return d.Properties.ReasonString
}

// describe formats a reason code with its MQTT v5 name and the broker's
// reason string.
func describe(code byte, reason string) string {
	s := fmt.Sprintf("0x%02x", code)
	if n, ok := reasonNames[code]; ok {
		s += " " + n
	}
	if reason != "" {
		s += " (" + reason + ")"
	}
	return s
}

var reasonNames = map[byte]string{
	0x00: "Success",
	0x10: "No matching subscribers",
	0x18: "Continue authentication",
	0x19: "Re-authenticate",
	0x80: "Unspecified error",
	0x81: "Malformed Packet",
	0x82: "Protocol Error",
	0x86: "Bad User Name or Password",
	0x87: "Not authorized",
	0x88: "Server unavailable",
	0x8C: "Bad authentication method",
	0x8E: "Session taken over",
	0x97: "Quota exceeded",
	0xA0: "Maximum connect time",
}
