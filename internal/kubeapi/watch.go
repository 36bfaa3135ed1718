package kubeapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Accept headers of metadata-only lists and watches
// (PartialObjectMetadata): names, UIDs and annotations without a pod's
// spec and status.
const (
	AcceptMetaList = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1, application/json"
	AcceptMeta     = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json"
)

// ListPage bounds the objects of one list answer, so that a page stays
// well under MaxResponse.
const ListPage = 200

// watchTimeout is the timeoutSeconds of a watch call: the API server ends
// the call after it and the watch resumes from the last resourceVersion.
// watchIdle is how long a watch may stay silent (bookmarks arrive about
// once a minute) before it is presumed dead: an API server that vanished
// without closing the connection.
var (
	watchTimeout = 5 * time.Minute
	watchIdle    = watchTimeout + 30*time.Second
)

// ObjectMeta is the part of an object's metadata the watches read.
type ObjectMeta struct {
	Name            string            `json:"name"`
	Namespace       string            `json:"namespace"`
	UID             string            `json:"uid"`
	ResourceVersion string            `json:"resourceVersion"`
	Generation      int64             `json:"generation"`
	Annotations     map[string]string `json:"annotations"`
}

// Object is an object's metadata with the whole object as it came.
type Object struct {
	Meta ObjectMeta
	Raw  json.RawMessage
}

type metaOnly struct {
	Metadata ObjectMeta `json:"metadata"`
}

type list struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
		Continue        string `json:"continue"`
	} `json:"metadata"`
	Items []json.RawMessage `json:"items"`
}

// watchEvent is one line of a watch stream.
type watchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

func decodeObject(raw json.RawMessage) (Object, error) {
	var m metaOnly
	if err := json.Unmarshal(raw, &m); err != nil {
		return Object{}, err
	}
	return Object{Meta: m.Metadata, Raw: raw}, nil
}

// List calls fn for every object of the collection at path (as
// "/api/v1/namespaces/ns/pods"), page by page, and returns the list's
// resourceVersion, from which a watch continues. accept empty means
// application/json. An expired continue token is ErrGone.
func (c *Client) List(ctx context.Context, op, path, accept string, fn func(Object)) (string, error) {
	cont := ""
	for {
		q := url.Values{"limit": {strconv.Itoa(ListPage)}}
		if cont != "" {
			q.Set("continue", cont)
		}
		var page list
		if err := c.Do(ctx, Request{Op: op, Method: http.MethodGet, Path: path + sep(path) + q.Encode(), Accept: accept, Errors: listErrors}, &page); err != nil {
			if errors.Is(err, errNotFound) {
				return "", c.apiErr(op, http.StatusNotFound, "the resource is not served (is its CustomResourceDefinition installed?)")
			}
			return "", err
		}
		for _, raw := range page.Items {
			obj, err := decodeObject(raw)
			if err != nil {
				return "", fmt.Errorf("%w: %s: decoding an item: %w", c.unavailable, op, err)
			}
			fn(obj)
		}
		if page.Metadata.Continue == "" {
			return page.Metadata.ResourceVersion, nil
		}
		cont = page.Metadata.Continue
	}
}

var (
	errNotFound = errors.New("kubeapi: not found")
	listErrors  = map[int]error{http.StatusNotFound: errNotFound, http.StatusGone: ErrGone}
)

func sep(path string) string {
	if strings.Contains(path, "?") {
		return "&"
	}
	return "?"
}

// Watch streams the changes of the collection at path from
// resourceVersion rv and calls fn for each ADDED, MODIFIED and DELETED
// object; bookmarks only move the resourceVersion. It returns the last
// resourceVersion seen and why the stream ended: nil when the API server
// closed it normally (resume from the returned version), ErrGone when the
// version is too old (list again), another error otherwise.
func (c *Client) Watch(ctx context.Context, op, path, accept, rv string, fn func(typ string, obj Object)) (string, error) {
	q := url.Values{
		"watch":               {"1"},
		"resourceVersion":     {rv},
		"allowWatchBookmarks": {"true"},
		"timeoutSeconds":      {strconv.Itoa(int(watchTimeout / time.Second))},
	}
	u := c.base.String() + path + sep(path) + q.Encode()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A silent stream is cut after watchIdle; every event re-arms the
	// timer.
	var idled atomic.Bool // the stream went silent: a failure, not a shutdown
	idle := time.AfterFunc(watchIdle, func() { idled.Store(true); cancel() })
	defer idle.Stop()
	start := time.Now()
	resp, err := c.stream(ctx, op, u, accept)
	if err != nil {
		if ctx.Err() == nil {
			c.observeWatch(start, true)
		}
		return rv, err
	}
	defer resp.Body.Close()
	c.observeWatch(start, false)
	dec := json.NewDecoder(io.LimitReader(resp.Body, 1<<40))
	for {
		var ev watchEvent
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				return rv, nil
			}
			if ctx.Err() == nil || idled.Load() {
				c.observeWatch(start, true) // broken, not ended by the caller
			}
			return rv, fmt.Errorf("%w: %s: %w", c.unavailable, op, err)
		}
		idle.Reset(watchIdle)
		if len(ev.Object) > MaxResponse {
			return rv, fmt.Errorf("%w: %s: event larger than %d bytes", c.unavailable, op, MaxResponse)
		}
		if ev.Type == "ERROR" {
			var st Status
			_ = json.Unmarshal(ev.Object, &st)
			if st.Code == http.StatusGone {
				return rv, ErrGone
			}
			return rv, c.apiErr(op, st.Code, Truncate(st.Message, 256))
		}
		obj, err := decodeObject(ev.Object)
		if err != nil {
			return rv, fmt.Errorf("%w: %s: decoding an event: %w", c.unavailable, op, err)
		}
		if obj.Meta.ResourceVersion != "" {
			rv = obj.Meta.ResourceVersion
		}
		switch ev.Type {
		case "ADDED", "MODIFIED", "DELETED":
			fn(ev.Type, obj)
		}
	}
}

// stream opens a watch call: like Do, but the answer's body is returned
// open and no overall timeout cuts it (the connection and the headers
// still have theirs).
func (c *Client) stream(ctx context.Context, op, u, accept string) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", c.name, op, err)
		}
		req.Header.Set("Accept", cmp.Or(accept, "application/json"))
		sent, err := c.authorize(req, attempt > 0)
		if err != nil {
			return nil, err
		}
		resp, err := c.watchHC.Do(req)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", c.unavailable, op, err)
		}
		if resp.StatusCode == http.StatusOK {
			return resp, nil
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 && c.retryToken(sent) {
			continue
		}
		if resp.StatusCode == http.StatusGone {
			return nil, ErrGone
		}
		return nil, c.statusErr(op, resp.StatusCode, data)
	}
}

// Default backoff of [Follow].
const (
	DefaultBackoffMin = 250 * time.Millisecond
	DefaultBackoffMax = 30 * time.Second
)

// Follow is the list+watch loop of one collection: it lists (Relist),
// then watches from the list's resourceVersion, resumes a watch the API
// server ended from the last version seen, lists again at once after a
// 410 Gone, and after any other failure (the API server restarting, a
// network error) waits a backoff that doubles from BackoffMin to
// BackoffMax, then lists again, which also catches what changed
// meanwhile.
type Follow struct {
	// Client makes the calls.
	Client *Client
	// Op names the watch in errors ("watch pods"); Path is the
	// collection ("/api/v1/namespaces/ns/pods"); Accept is the watch's
	// Accept header (empty: application/json).
	Op, Path, Accept string
	// Relist lists the collection, reconciles the caller's state with it
	// and returns the list's resourceVersion (usually through
	// Client.List).
	Relist func(ctx context.Context) (resourceVersion string, err error)
	// Event is called for each ADDED, MODIFIED or DELETED object.
	Event func(typ string, obj Object)
	// Failed, when set, is told of a failure and the backoff before the
	// next attempt, at most once a minute (nil errors are not reported).
	Failed func(err error, backoff time.Duration)
	// Resumed, when set, is called after a relist that followed a
	// failure: the watch works again.
	Resumed func()
	// BackoffMin and BackoffMax bound the wait; zero means the defaults.
	BackoffMin, BackoffMax time.Duration
}

// Run follows until ctx ends.
func (f *Follow) Run(ctx context.Context) {
	bmin, bmax := f.BackoffMin, f.BackoffMax
	if bmin <= 0 {
		bmin = DefaultBackoffMin
	}
	if bmax <= 0 {
		bmax = DefaultBackoffMax
	}
	backoff := bmin
	var lastLog time.Time
	failed := false
	fail := func(err error) bool {
		if ctx.Err() != nil {
			return false
		}
		failed = true
		if f.Failed != nil && time.Since(lastLog) > time.Minute {
			lastLog = time.Now()
			f.Failed(err, backoff)
		}
		t := time.NewTimer(backoff)
		defer t.Stop()
		backoff = min(2*backoff, bmax)
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for ctx.Err() == nil {
		rv, err := f.Relist(ctx)
		if err != nil {
			if errors.Is(err, ErrGone) || fail(err) {
				continue
			}
			return
		}
		if failed {
			failed = false
			if f.Resumed != nil {
				f.Resumed()
			}
		}
		for ctx.Err() == nil {
			var err error
			start := time.Now()
			rv, err = f.Client.Watch(ctx, f.Op, f.Path, f.Accept, rv, func(typ string, obj Object) {
				backoff = bmin // the stream works
				f.Event(typ, obj)
			})
			if err == nil && time.Since(start) < time.Second {
				err = fmt.Errorf("%w: %s ended at once", f.Client.unavailable, f.Op)
			}
			if err == nil {
				continue // the server ended the call: resume
			}
			if !errors.Is(err, ErrGone) && !fail(err) {
				return
			}
			break // list again
		}
	}
}

// observeWatch tells Config.WatchObserver about a watch stream.
func (c *Client) observeWatch(start time.Time, failed bool) {
	if c.watchObs != nil {
		c.watchObs(time.Since(start), failed)
	}
}
