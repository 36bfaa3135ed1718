package kubeapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
)

// bodyTransport answers every request with 200 and the fuzzer's body.
type bodyTransport []byte

func (b bodyTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(b))}, nil
}

// FuzzWatchStream feeds arbitrary watch streams to the watch decoder: it
// must never panic, deliver only ADDED, MODIFIED and DELETED events, and
// turn an ERROR event with code 410 into ErrGone.
func FuzzWatchStream(f *testing.F) {
	f.Add([]byte(`{"type":"ADDED","object":{"metadata":{"name":"a","uid":"1","resourceVersion":"5","annotations":{"aio-broker-auth/x":"y"}}}}` + "\n"))
	f.Add([]byte(`{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}{"type":"DELETED","object":{"metadata":{"name":"a"}}}`))
	f.Add([]byte(`{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old"}}`))
	f.Add([]byte(`{"type":"MODIFIED","object":[]}`))
	f.Add([]byte(`{"type":"ADDED","object":`))
	f.Fuzz(func(t *testing.T, body []byte) {
		c := NewForTest("https://kube.invalid", &http.Client{Transport: bodyTransport(body)})
		_, _ = c.Watch(context.Background(), "watch serviceaccounts", "/api/v1/namespaces/ns/serviceaccounts", AcceptMeta, "1", func(typ string, _ Object) {
			switch typ {
			case "ADDED", "MODIFIED", "DELETED":
			default:
				t.Fatalf("event of type %q delivered", typ)
			}
		})
	})
}

func TestWatchStream(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   string
		events int
		rv     string
		gone   bool
		err    bool
	}{
		{name: "events_then_end", events: 2, rv: "7",
			body: `{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"5"}}}{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"6"}}}{"type":"DELETED","object":{"metadata":{"name":"a","resourceVersion":"7"}}}`},
		{name: "410_gone", body: `{"type":"ERROR","object":{"kind":"Status","code":410}}`, rv: "1", gone: true, err: true},
		{name: "truncated", body: `{"type":"ADDED","object":`, rv: "1", err: true},
		{name: "other_error", body: `{"type":"ERROR","object":{"kind":"Status","code":500}}`, rv: "1", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewForTest("https://kube.invalid", &http.Client{Transport: bodyTransport(tc.body)})
			n := 0
			rv, err := c.Watch(context.Background(), "watch pods", "/api/v1/namespaces/ns/pods", "", "1", func(string, Object) { n++ })
			if (err != nil) != tc.err || errors.Is(err, ErrGone) != tc.gone {
				t.Fatalf("err = %v, want error %v, 410 %v", err, tc.err, tc.gone)
			}
			if n != tc.events || rv != tc.rv {
				t.Fatalf("%d events to resourceVersion %q, want %d to %q", n, rv, tc.events, tc.rv)
			}
		})
	}
}
