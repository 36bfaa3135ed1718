package mochi_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/mqttconn"
)

// Attach the hook to a mochi server: every client is authenticated by the
// Manager's authenticator and authorized by its authorizer.
func ExampleAttach() {
	passwords := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
		if !req.HasUsername {
			return auth.Result{} // not relevant
		}
		if req.Username == "alice" && string(req.Password) == "secret" {
			return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Method: "password", Username: "alice"}))
		}
		return auth.FailResult(auth.BadUserNameOrPassword, nil)
	})
	m, err := auth.NewManager(auth.Config{
		Authenticator: auth.Chain{passwords},
		Authorizer:    auth.AllowAuthenticated,
		Logger:        slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}

	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	h, err := mochi.Attach(srv, mochi.Config{Manager: m})
	if err != nil {
		panic(err)
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})); err != nil {
		panic(err)
	}
	if err := srv.Serve(); err != nil {
		panic(err)
	}
	defer srv.Close()
	fmt.Println(h.ID(), h.Len())
	// Output: mqttauth 0
}

// Serve through the hook's listener: peers must send CONNECT within
// Limits.ConnectTimeout, at most Limits.MaxPending may be unauthenticated at once
// (Limits.MaxPendingPerSource from one address), and
// packets are bounded by Limits.MaxPacketSize (1 MiB by default). For mTLS pass
// an x509auth Authenticator's ServerTLSConfig instead of nil.
func ExampleHook_Listener() {
	m, err := auth.NewManager(auth.Config{
		Authenticator: auth.Chain{},
		Authorizer:    auth.AllowAuthenticated,
		Logger:        slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	h, err := mochi.Attach(srv, mochi.Config{Manager: m, Limits: mqttconn.Limits{ConnectTimeout: 5 * time.Second, MaxPending: 100}})
	if err != nil {
		panic(err)
	}
	if err := srv.AddListener(h.Listener("tcp", "127.0.0.1:0", nil)); err != nil {
		panic(err)
	}
	if err := srv.Serve(); err != nil {
		panic(err)
	}
	defer srv.Close()
	fmt.Println(srv.Options.Capabilities.MaximumPacketSize, h.Stats().Pending)
	// Output: 1048576 0
}

// Keep mochi's own warnings without the packets, and their credentials,
// that mochi attaches to them.
func ExampleServerLogger() {
	h := slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		Level: slog.LevelWarn,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // a stable output for the example
			}
			return a
		},
	})
	srv := mqtt.New(&mqtt.Options{Logger: mochi.ServerLogger(h)})

	// What mochi logs when it refuses a packet by itself:
	srv.Log.Warn("error processing packet", "error", "protocol violation: invalid reason", "client", "sensor-1", "pk", "AUTH with its Authentication Data")
	// Output: level=WARN msg="error processing packet" error="protocol violation: invalid reason" client=sensor-1
}
