package satauth_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/satauth/sattest"
)

// A broker in a pod: TokenReview through the in-cluster API server, with
// the pod's own token and CA, and the service account annotations
// "aio-broker-auth/*" as attributes.
func ExampleNew() {
	ctx := context.Background()
	sat, err := satauth.New(ctx, satauth.Config{
		Audiences: []string{"aio-mq"},
		Logger:    slog.Default(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sat.Close()
	m, err := auth.NewManager(auth.Config{Authenticator: auth.Chain{sat}, Authorizer: auth.AllowAuthenticated})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = m // hand m.NewSession to the broker adapter
}

// Local verification with the cluster's keys: no API call per connect.
func ExampleNew_local() {
	sat, err := satauth.New(context.Background(), satauth.Config{
		Audiences: []string{"aio-mq"},
		Mode:      satauth.ModeLocal,
		Issuer:    "https://kubernetes.default.svc.cluster.local",
		// Keys are refetched at most every 30 s on an unknown key id.
		KeyRefreshInterval: 30 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sat.Close()
}

// A broker's test with the fake API server of package sattest.
func Example_sattest() {
	// In a broker's test this is sattest.NewServer(t, ...) with the test's
	// *testing.T; an Example has none, so exampleTB stands in.
	tb := &exampleTB{}
	defer tb.cleanup()
	srv := sattest.NewServer(tb, sattest.Options{})
	srv.AddServiceAccount("factory", "robot", map[string]string{"aio-broker-auth/line": "3"})

	sat, err := satauth.New(context.Background(), srv.Config("aio-mq"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sat.Close()
	token := srv.Token("factory", "robot", sattest.TokenOptions{Audiences: []string{"aio-mq"}})
	r := sat.Authenticate(context.Background(), &auth.Request{AuthMethod: "K8S-SAT", AuthData: []byte(token)})
	line, _ := r.Principal.Attribute("line")
	fmt.Println(r.Outcome, r.Principal.Username(), line)
	// Output:
	// Pass system:serviceaccount:factory:robot 3
}

// Follow Kubernetes while clients are connected: check the broker's RBAC
// at start-up, then watch the clients' service accounts and pods. Deleting
// the account disconnects its client.
func ExampleAuthenticator_RecheckOnChange() {
	tb := &exampleTB{}
	defer tb.cleanup()
	srv := sattest.NewServer(tb, sattest.Options{})
	srv.AddServiceAccount("factory", "robot", map[string]string{"aio-broker-auth/line": "3"})

	ctx := context.Background()
	cfg := srv.Config("aio-mq")
	cfg.Logger = slog.New(slog.DiscardHandler)
	sat, err := satauth.New(ctx, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sat.Close()
	fmt.Println("ready:", sat.CheckReady(ctx)) // before the listeners open
	m, err := auth.NewManager(auth.Config{Authenticator: auth.Chain{sat}, Authorizer: auth.AllowAuthenticated,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	stop := sat.RecheckOnChange(m)
	defer stop()

	conn := authtest.NewConn() // the broker adapter's connection
	s := m.NewSession(conn)
	token := srv.Token("factory", "robot", sattest.TokenOptions{Audiences: []string{"aio-mq"}})
	resp := s.Connect(ctx, &auth.Request{AuthMethod: "K8S-SAT", AuthData: []byte(token), ProtocolVersion: 5})
	fmt.Println("CONNACK", resp.Packet.Code)

	for srv.Calls(sattest.Watch) < 2 { // the namespace's watches are up
		time.Sleep(10 * time.Millisecond)
	}
	srv.DeleteServiceAccount("factory", "robot")
	<-conn.Done()
	final, _ := conn.Final()
	fmt.Println(final.Type, final.Code)
	// Output:
	// ready: <nil>
	// CONNACK Success (0x00)
	// DISCONNECT Not authorized (0x87)
}

// Follow Kubernetes through the Manager's watches: the Manager subscribes
// to the follower itself, and its Close stops it. Deleting the account
// disconnects its client.
func ExampleAuthenticator_Watch() {
	tb := &exampleTB{}
	defer tb.cleanup()
	srv := sattest.NewServer(tb, sattest.Options{})
	srv.AddServiceAccount("factory", "robot", nil)

	ctx := context.Background()
	cfg := srv.Config("aio-mq")
	cfg.Logger = slog.New(slog.DiscardHandler)
	sat, err := satauth.New(ctx, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sat.Close()
	m, err := auth.NewManager(auth.Config{Authenticator: auth.Chain{sat}, Authorizer: auth.AllowAuthenticated,
		Watches: []auth.Watch{sat.Watch(0)}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()

	conn := authtest.NewConn()
	s := m.NewSession(conn)
	token := srv.Token("factory", "robot", sattest.TokenOptions{Audiences: []string{"aio-mq"}})
	resp := s.Connect(ctx, &auth.Request{AuthMethod: "K8S-SAT", AuthData: []byte(token), ProtocolVersion: 5})
	fmt.Println("CONNACK", resp.Packet.Code)

	for srv.Calls(sattest.Watch) < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	srv.DeleteServiceAccount("factory", "robot")
	<-conn.Done()
	final, _ := conn.Final()
	fmt.Println(final.Type, final.Code)
	// Output:
	// CONNACK Success (0x00)
	// DISCONNECT Not authorized (0x87)
}

// exampleTB is the little of testing.TB that sattest uses, for Examples.
type exampleTB struct {
	testing.TB
	cleanups []func()
}

func (*exampleTB) Helper() {}

func (e *exampleTB) Cleanup(f func()) { e.cleanups = append(e.cleanups, f) }

func (*exampleTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

func (e *exampleTB) TempDir() string {
	dir, err := os.MkdirTemp("", "sattest-example-")
	if err != nil {
		panic(err)
	}
	e.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (e *exampleTB) cleanup() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
}
