package conformance

import (
	"context"
	"hash/fnv"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// Timeout bounds every wait of the suite.
const Timeout = 5 * time.Second

// Client is a paho.golang v5 client connected to a broker, recording what the
// server sent outside request/response pairs.
type Client struct {
	*paho.Client
	// Disconnects receives the server's DISCONNECT packets.
	Disconnects chan *paho.Disconnect
	// Messages receives the PUBLISH packets delivered to the client.
	Messages chan *paho.Publish
	// Handler is the client's paho.Auther.
	Handler *Handler
}

// Handler is a paho.Auther that answers AUTH 0x18 challenges from a table
// of challenge data to answer data, and records what it received.
type Handler struct {
	// Method is the Authentication Method put on every answer.
	Method string
	// Answers maps the data of a challenge to the data of the answer; an
	// unknown challenge is answered with empty data.
	Answers map[string]string

	mu       sync.Mutex
	received []*paho.Auth
}

// Authenticate answers a challenge.
func (h *Handler) Authenticate(a *paho.Auth) *paho.Auth {
	h.mu.Lock()
	h.received = append(h.received, a)
	h.mu.Unlock()
	var data string
	if a.Properties != nil {
		data = h.Answers[string(a.Properties.AuthData)]
	}
	return &paho.Auth{ReasonCode: 0x18, Properties: &paho.AuthProperties{AuthMethod: h.Method, AuthData: []byte(data)}}
}

// Authenticated is called by paho on a successful CONNACK with a method.
func (h *Handler) Authenticated() {}

// Received returns the AUTH packets the handler has received.
func (h *Handler) Received() []*paho.Auth {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*paho.Auth(nil), h.received...)
}

// dial is Dial for the suite's own cases: a non-empty client identifier
// gets a suffix of the case's own (see CaseClientID), so that a broker
// shared by several cases (a cluster, RabbitMQ, NATS behind the gateway)
// never sees one case's client take over the session of a client of an
// earlier case that it is still closing.
func dial(tb testing.TB, addr string, cp *paho.Connect, answers map[string]string) (*Client, *paho.Connack, error) {
	tb.Helper()
	if cp.ClientID != "" {
		cp.ClientID = CaseClientID(tb, cp.ClientID)
	}
	return Dial(tb, addr, cp, answers)
}

// Dial connects a client to addr with cp, answering challenges with
// answers. It returns the CONNACK and paho's error (set for a failing
// CONNACK). A connected client is disconnected by tb.Cleanup.
func Dial(tb testing.TB, addr string, cp *paho.Connect, answers map[string]string) (*Client, *paho.Connack, error) {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		tb.Fatalf("conformance: dial %s: %v", addr, err)
	}
	h := &Handler{Answers: answers}
	if cp.Properties != nil {
		h.Method = cp.Properties.AuthMethod
	}
	c := &Client{
		Disconnects: make(chan *paho.Disconnect, 4),
		Messages:    make(chan *paho.Publish, 64),
		Handler:     h,
	}
	c.Client = paho.NewClient(paho.ClientConfig{
		// paho writes a packet's header and body in separate writes and
		// serializes them only on a Conn that is a sync.Locker; without it,
		// the PINGREQ paho sends right after CONNACK can land inside an AUTH.
		Conn:               packets.NewThreadSafeConn(conn),
		AuthHandler:        h,
		PacketTimeout:      Timeout,
		OnServerDisconnect: func(d *paho.Disconnect) { c.Disconnects <- d },
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			select {
			case c.Messages <- pr.Packet:
			default:
			}
			return true, nil
		}},
	})
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		_ = conn.Close()
		return c, ca, err
	}
	tb.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
		select {
		case <-c.Done():
		case <-time.After(Timeout):
			tb.Errorf("conformance: client %s did not shut down", cp.ClientID)
		}
	})
	return c, ca, nil
}

// WaitDisconnect waits up to d for a DISCONNECT from the server.
func (c *Client) WaitDisconnect(tb testing.TB, d time.Duration) *paho.Disconnect {
	tb.Helper()
	select {
	case dis := <-c.Disconnects:
		return dis
	case <-time.After(d):
		tb.Fatalf("conformance: no DISCONNECT within %v", d)
		return nil
	}
}

// PublishQoS1 publishes payload to topic at QoS 1 and returns the PUBACK
// reason code. 0x10 (No matching subscribers), the success code a broker
// such as mosquitto sends when nobody subscribed to the topic, is returned
// as 0x00: the suite asks whether the publish was accepted.
func (c *Client) PublishQoS1(tb testing.TB, topic, payload string) byte {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	if pr == nil {
		tb.Fatalf("conformance: publish %q: %v", topic, err)
	}
	if pr.ReasonCode == 0x10 {
		return 0x00
	}
	return pr.ReasonCode
}

// SubscribeCode subscribes to filter at QoS 1 and returns the SUBACK reason
// code.
func (c *Client) SubscribeCode(tb testing.TB, filter string) byte {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if sa == nil || len(sa.Reasons) != 1 {
		tb.Fatalf("conformance: subscribe %q: %v", filter, err)
	}
	return sa.Reasons[0]
}

// CaseClientID returns id with a suffix derived from the test's name: the
// same within a test, different between tests.
func CaseClientID(tb testing.TB, id string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(tb.Name()))
	return id + "-" + strconv.FormatUint(uint64(h.Sum32()), 36)
}
