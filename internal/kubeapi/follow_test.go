package kubeapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// A fake collection: the first watch answers 410 Gone (the client lists
// again), the second streams one event and ends (the client resumes from
// its resourceVersion), the third fails with 500 (the client backs off and
// lists again), the fourth streams an event and holds.
func TestFollowGoneResumeBackoff(t *testing.T) {
	var (
		mu      sync.Mutex
		lists   int
		watches []string // the resourceVersion each watch asked for
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Query().Get("watch") == "" {
			lists++
			fmt.Fprintf(w, `{"metadata":{"resourceVersion":"%d"},"items":[{"metadata":{"name":"a","resourceVersion":"%d"}}]}`, 10*lists, 10*lists)
			return
		}
		watches = append(watches, r.URL.Query().Get("resourceVersion"))
		switch len(watches) {
		case 1:
			w.WriteHeader(http.StatusGone)
			fmt.Fprint(w, `{"kind":"Status","code":410}`)
		case 2:
			fmt.Fprint(w, `{"type":"MODIFIED","object":{"metadata":{"name":"a","resourceVersion":"21"}}}`+"\n")
			w.(http.Flusher).Flush()
			time.Sleep(1100 * time.Millisecond) // a normal end, not "at once"
		case 3:
			w.WriteHeader(http.StatusInternalServerError)
		default:
			fmt.Fprint(w, `{"type":"ADDED","object":{"metadata":{"name":"b","resourceVersion":"31"}}}`+"\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	c := NewForTest(srv.URL, srv.Client())
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan string, 8)
	var failures []error
	var resumed int
	f := Follow{
		Client: c, Op: "watch things", Path: "/api/v1/namespaces/ns/things",
		Relist: func(ctx context.Context) (string, error) {
			return c.List(ctx, "list things", "/api/v1/namespaces/ns/things", "", func(Object) {})
		},
		Event:      func(typ string, o Object) { events <- typ + " " + o.Meta.Name },
		Failed:     func(err error, _ time.Duration) { failures = append(failures, err) },
		Resumed:    func() { resumed++ },
		BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
	}
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	for _, want := range []string{"MODIFIED a", "ADDED b"} {
		select {
		case got := <-events:
			if got != want {
				t.Fatalf("event %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event %q", want)
		}
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	// list(10) watch@10 -> 410; list(20) watch@20 -> event 21, end;
	// watch@21 -> 500; backoff, list(30) watch@30.
	if fmt.Sprint(watches) != "[10 20 21 30]" || lists != 3 {
		t.Fatalf("watches from %v after %d lists, want [10 20 21 30] after 3", watches, lists)
	}
	if len(failures) != 1 || resumed != 1 {
		t.Fatalf("%d failures reported (%v), %d resumptions: want 1 and 1", len(failures), failures, resumed)
	}
}
