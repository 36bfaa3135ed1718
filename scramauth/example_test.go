package scramauth_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"

	"github.com/xdg-go/scram"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/scramauth"
)

// A full SCRAM-SHA-256 exchange at CONNECT, then a re-authentication, in
// process: the broker side is an auth.Session, the client side is
// xdg-go/scram's client.
func Example() {
	ctx := context.Background()

	// Provisioning: derive the stored keys from the password once.
	cred, err := scramauth.NewCredential(scramauth.SHA256, "pencil", 4096)
	if err != nil {
		log.Fatal(err)
	}
	users, err := scramauth.NewUsers(&scramauth.File{Users: []scramauth.User{{
		Name:        "alice",
		Credentials: map[scramauth.Mechanism]scramauth.Credential{scramauth.SHA256: cred},
		Attributes:  map[string]string{"group": "thermostats"},
	}}})
	if err != nil {
		log.Fatal(err)
	}

	// The broker.
	authn, err := scramauth.New(scramauth.Config{Store: users})
	if err != nil {
		log.Fatal(err)
	}
	m, err := auth.NewManager(auth.Config{
		Authenticator: authn,
		Authorizer:    auth.AllowAuthenticated,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	s := m.NewSession(auth.ConnFunc(func(auth.Packet) {}))
	defer s.Close()

	// The client.
	client, err := scram.SHA256.NewClient("alice", "pencil", "")
	if err != nil {
		log.Fatal(err)
	}
	exchange := func(first func(data []byte) auth.Response) {
		conv := client.NewConversation()
		c1, _ := conv.Step("")
		resp := first([]byte(c1))
		fmt.Println("server:", resp.Packet.Type, resp.Packet.Code)
		c2, err := conv.Step(string(resp.Packet.Data))
		if err != nil {
			log.Fatal(err)
		}
		resp = s.Auth(ctx, auth.Packet{Type: auth.AUTH, Code: auth.ContinueAuthentication, Method: "SCRAM-SHA-256", Data: []byte(c2)})
		fmt.Println("server:", resp.Packet.Type, resp.Packet.Code)
		if _, err := conv.Step(string(resp.Packet.Data)); err != nil {
			log.Fatal(err)
		}
		fmt.Println("client verified the server:", conv.Valid())
	}

	exchange(func(c1 []byte) auth.Response {
		return s.Connect(ctx, &auth.Request{ClientID: "t-1", AuthMethod: "SCRAM-SHA-256", AuthData: c1})
	})
	p := s.Principal()
	group, _ := p.Attribute("group")
	fmt.Println("principal:", p.Username(), p.Method(), group)

	exchange(func(c1 []byte) auth.Response {
		return s.Auth(ctx, auth.Packet{Type: auth.AUTH, Code: auth.ReAuthenticate, Method: "SCRAM-SHA-256", Data: c1})
	})
	// Output:
	// server: AUTH Continue authentication (0x18)
	// server: CONNACK Success (0x00)
	// client verified the server: true
	// principal: alice SCRAM-SHA-256 thermostats
	// server: AUTH Continue authentication (0x18)
	// server: AUTH Success (0x00)
	// client verified the server: true
}

// Deriving a credential for a users file: the file holds the salt, the
// iteration count and the two derived keys, never the password.
func ExampleNewCredential() {
	cred, err := scramauth.NewCredential(scramauth.SHA512, "correct horse battery staple", 10000)
	if err != nil {
		log.Fatal(err)
	}
	f := &scramauth.File{}
	f.Put(scramauth.User{
		Name:        "sensor-17",
		Credentials: map[scramauth.Mechanism]scramauth.Credential{scramauth.SHA512: cred},
	})
	data, err := f.Marshal()
	if err != nil {
		log.Fatal(err)
	}
	users, err := scramauth.ParseUsers(data)
	if err != nil {
		log.Fatal(err)
	}
	c, ok := users.Lookup(scramauth.SHA512, "sensor-17")
	fmt.Println(ok, c.Iterations, len(c.Salt), len(c.StoredKey), len(c.ServerKey))
	// Output: true 10000 16 64 64
}

// A users file that is reloaded when it changes; removed users lose their
// live connections.
func ExampleNewFileStore() {
	store, err := scramauth.NewFileStore(scramauth.FileStoreConfig{Path: "/etc/mqtt/users.json"})
	if err != nil {
		log.Print(err)
		return
	}
	defer store.Close()
	authn, err := scramauth.New(scramauth.Config{Store: store})
	if err != nil {
		log.Fatal(err)
	}
	m, err := auth.NewManager(auth.Config{
		Authenticator: authn,
		Authorizer:    auth.AllowAuthenticated,
		// The Manager subscribes to the store's change signal.
		Watches: []auth.Watch{{Name: "scram users", Source: store, Check: scramauth.CheckStore(store)}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
}
