// Command scramclient connects to an MQTT v5 broker with SCRAM-SHA-256 or
// SCRAM-SHA-512 enhanced authentication (paho.golang and xdg-go/scram): the
// client-first-message in CONNECT, the server-first-message in AUTH 0x18,
// the client-final-message in AUTH 0x18, and the server's signature in the
// CONNACK, which it verifies. It can then re-authenticate and publish.
//
//	scramclient -broker localhost:8883 -cafile mqttauth-dev/contoso_root_ca.crt \
//	    -user sample -password-file mqttauth-dev/scram-sample.password -reauth -publish sandbox/hello
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/xdg-go/scram"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "scramclient:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("scramclient", flag.ContinueOnError)
	broker := fs.String("broker", "localhost:8883", "broker address (TLS)")
	caFile := fs.String("cafile", "", "CA certificate of the broker's server certificate (PEM), required")
	user := fs.String("user", "", "SCRAM user name, required")
	pwFile := fs.String("password-file", "", "file whose first line is the password, required")
	mech := fs.String("mech", "SCRAM-SHA-256", "SCRAM-SHA-256 or SCRAM-SHA-512")
	clientID := fs.String("client-id", "scramclient", "MQTT client identifier")
	reauth := fs.Bool("reauth", false, "re-authenticate (AUTH 0x19) once after connecting")
	publish := fs.String("publish", "", "publish one QoS 1 message to this topic")
	message := fs.String("message", "hello from scramclient", "payload of -publish")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout of each step")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *caFile == "" || *user == "" || *pwFile == "" {
		return errors.New("-cafile, -user and -password-file are required")
	}
	hash := scram.SHA256
	switch *mech {
	case "SCRAM-SHA-256":
	case "SCRAM-SHA-512":
		hash = scram.SHA512
	default:
		return fmt.Errorf("-mech %q: want SCRAM-SHA-256 or SCRAM-SHA-512", *mech)
	}
	password, err := readFirstLine(*pwFile)
	if err != nil {
		return err
	}
	sc, err := hash.NewClient(*user, password, "")
	if err != nil {
		return err
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s holds no PEM certificate", *caFile)
	}
	host := *broker
	if i := strings.LastIndex(host, ":"); i >= 0 {
		host = host[:i]
	}
	conn, err := tls.Dial("tcp", *broker, &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12})
	if err != nil {
		return err
	}
	defer conn.Close()

	a := &auther{mech: *mech, client: sc}
	disconnected := make(chan *paho.Disconnect, 1)
	c := paho.NewClient(paho.ClientConfig{
		// paho serializes its writes only on a Conn that is a sync.Locker;
		// on a bare *tls.Conn its first PINGREQ, sent right after CONNACK,
		// can land between an AUTH packet's header and body.
		Conn:               packets.NewThreadSafeConn(conn),
		AuthHandler:        a,
		OnServerDisconnect: func(d *paho.Disconnect) { disconnected <- d },
		OnClientError:      func(error) {},
	})
	step, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	ca, err := c.Connect(step, &paho.Connect{
		ClientID: *clientID, KeepAlive: 30, CleanStart: true,
		Properties: &paho.ConnectProperties{AuthMethod: *mech, AuthData: a.begin(), RequestProblemInfo: true},
	})
	if err != nil {
		if ca != nil {
			return fmt.Errorf("CONNACK 0x%02x: %w", ca.ReasonCode, err)
		}
		return err
	}
	if err := a.finish(ca.Properties.AuthData); err != nil {
		return fmt.Errorf("connected, but the server's signature does not verify: %w", err)
	}
	fmt.Fprintf(stdout, "connected as %s with %s: CONNACK 0x00, server signature verified\n", *user, *mech)
	defer func() { _ = c.Disconnect(&paho.Disconnect{ReasonCode: 0}) }()

	if *reauth {
		step, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		r, err := c.Authenticate(step, &paho.Auth{ReasonCode: 0x19, Properties: &paho.AuthProperties{AuthMethod: *mech, AuthData: a.begin()}})
		if err != nil {
			return fmt.Errorf("re-authentication: %w", err)
		}
		if !r.Success {
			return fmt.Errorf("re-authentication refused: reason code 0x%02x", r.ReasonCode)
		}
		if err := a.errs(); err != nil {
			return fmt.Errorf("re-authentication: %w", err)
		}
		// paho v0.23.0 drops the AUTH 0x00's data, so the server-final
		// message of a re-authentication cannot be checked here.
		fmt.Fprintln(stdout, "re-authenticated: AUTH 0x00")
	}
	if *publish != "" {
		step, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		r, err := c.Publish(step, &paho.Publish{Topic: *publish, QoS: 1, Payload: []byte(*message)})
		if r == nil && err != nil {
			return err
		}
		fmt.Fprintf(stdout, "published to %s: PUBACK 0x%02x\n", *publish, r.ReasonCode)
	}
	select {
	case d := <-disconnected:
		return fmt.Errorf("disconnected by the server: 0x%02x", d.ReasonCode)
	default:
		return nil
	}
}

func readFirstLine(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// auther runs the client side of a SCRAM exchange as a paho.Auther: it
// answers the server-first-message (AUTH 0x18) with the client-final.
type auther struct {
	mech   string
	client *scram.Client

	mu   sync.Mutex
	conv *scram.ClientConversation
	err  error
}

// begin starts an exchange and returns the client-first-message.
func (a *auther) begin() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conv, a.err = a.client.NewConversation(), nil
	first, _ := a.conv.Step("")
	return []byte(first)
}

func (a *auther) Authenticate(in *paho.Auth) *paho.Auth {
	a.mu.Lock()
	defer a.mu.Unlock()
	var data []byte
	if in.Properties != nil {
		data = in.Properties.AuthData
	}
	final, err := a.conv.Step(string(data))
	if err != nil && a.err == nil {
		a.err = err
	}
	return &paho.Auth{ReasonCode: 0x18, Properties: &paho.AuthProperties{AuthMethod: a.mech, AuthData: []byte(final)}}
}

func (a *auther) Authenticated() {}

func (a *auther) errs() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// finish verifies the server-final-message (v=ServerSignature).
func (a *auther) finish(serverFinal []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return a.err
	}
	if _, err := a.conv.Step(string(serverFinal)); err != nil {
		return err
	}
	if !a.conv.Valid() {
		return errors.New("invalid server signature")
	}
	return nil
}
