package satauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"
)

// The list and watch calls ask for metadata only (PartialObjectMetadata):
// names, UIDs and annotations are all the watch needs, and a pod's spec and
// status would cost the broker memory and the API server bandwidth.
const (
	acceptMetaList = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1, application/json"
	acceptMeta     = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json"
)

// listPage bounds the objects of one list answer, so that a page stays
// well under maxResponse.
const listPage = 200

// watchTimeout is the timeoutSeconds of a watch call: the API server ends
// the call after it and the watch resumes from the last resourceVersion.
// watchIdle is how long a watch may stay silent (bookmarks arrive about
// once a minute) before it is presumed dead: an API server that vanished
// without closing the connection.
var (
	watchTimeout = 5 * time.Minute
	watchIdle    = watchTimeout + 30*time.Second
)

// errGone is a 410 Gone answer: the resourceVersion is too old to watch
// from, so the caller lists again.
var errGone = errors.New("satauth: resourceVersion too old (410 Gone)")

// objectMeta is the part of an object's metadata the watch reads.
type objectMeta struct {
	Name            string            `json:"name"`
	Namespace       string            `json:"namespace"`
	UID             string            `json:"uid"`
	ResourceVersion string            `json:"resourceVersion"`
	Annotations     map[string]string `json:"annotations"`
}

type metaObject struct {
	Metadata objectMeta `json:"metadata"`
}

type metaList struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
		Continue        string `json:"continue"`
	} `json:"metadata"`
	Items []metaObject `json:"items"`
}

// watchEvent is one line of a watch stream.
type watchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// list calls fn for every object of resource ("serviceaccounts" or "pods")
// in namespace ns, page by page, and returns the list's resourceVersion,
// from which a watch continues.
func (c *kubeClient) list(ctx context.Context, ns, resource string, fn func(objectMeta)) (string, error) {
	op := "list " + resource // opListServiceAccounts, opListPods
	cont := ""
	for {
		q := url.Values{"limit": {strconv.Itoa(listPage)}}
		if cont != "" {
			q.Set("continue", cont)
		}
		path := "/api/v1/namespaces/" + url.PathEscape(ns) + "/" + resource + "?" + q.Encode()
		var page metaList
		if err := c.doAccept(ctx, op, path, acceptMetaList, &page); err != nil {
			var ae *APIError
			if errors.As(err, &ae) && ae.StatusCode == http.StatusGone {
				return "", errGone // the continue token expired
			}
			return "", err
		}
		for i := range page.Items {
			fn(page.Items[i].Metadata)
		}
		if page.Metadata.Continue == "" {
			return page.Metadata.ResourceVersion, nil
		}
		cont = page.Metadata.Continue
	}
}

// doAccept is a GET through do with its own Accept header.
func (c *kubeClient) doAccept(ctx context.Context, op, path, accept string, out any) error {
	return c.do(withAccept(ctx, accept), op, http.MethodGet, path, nil, out, nil)
}

type acceptKey struct{}

func withAccept(ctx context.Context, accept string) context.Context {
	return context.WithValue(ctx, acceptKey{}, accept)
}

// watch streams the changes of resource in ns from resourceVersion rv and
// calls fn for each ADDED, MODIFIED and DELETED object; bookmarks only move
// the resourceVersion. It returns the last resourceVersion seen and why the
// stream ended: nil when the API server closed it normally (resume from
// the returned version), errGone when the version is too old (list
// again), another error otherwise.
func (c *kubeClient) watch(ctx context.Context, ns, resource, rv string, fn func(typ string, m objectMeta)) (string, error) {
	op := "watch " + resource
	q := url.Values{
		"watch":               {"1"},
		"resourceVersion":     {rv},
		"allowWatchBookmarks": {"true"},
		"timeoutSeconds":      {strconv.Itoa(int(watchTimeout / time.Second))},
	}
	u := c.base.String() + "/api/v1/namespaces/" + url.PathEscape(ns) + "/" + resource + "?" + q.Encode()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A silent stream is cut after watchIdle; every event re-arms the
	// timer.
	var idled atomic.Bool // the stream went silent: a failure, not a shutdown
	idle := time.AfterFunc(watchIdle, func() { idled.Store(true); cancel() })
	defer idle.Stop()
	start := time.Now()
	resp, err := c.stream(ctx, op, u)
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
				c.observeWatch(start, true) // broken, not ended by us
			}
			return rv, fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
		}
		idle.Reset(watchIdle)
		if len(ev.Object) > maxResponse {
			return rv, fmt.Errorf("%w: %s: event larger than %d bytes", ErrUnavailable, op, maxResponse)
		}
		if ev.Type == "ERROR" {
			var st status
			_ = json.Unmarshal(ev.Object, &st)
			if st.Code == http.StatusGone {
				return rv, errGone
			}
			return rv, &APIError{Op: op, StatusCode: st.Code, Message: truncate(st.Message, 256)}
		}
		var obj metaObject
		if err := json.Unmarshal(ev.Object, &obj); err != nil {
			return rv, fmt.Errorf("%w: %s: decoding an event: %w", ErrUnavailable, op, err)
		}
		if obj.Metadata.ResourceVersion != "" {
			rv = obj.Metadata.ResourceVersion
		}
		switch ev.Type {
		case "ADDED", "MODIFIED", "DELETED":
			fn(ev.Type, obj.Metadata)
		}
	}
}

// stream opens a watch call: like do, but the answer's body is returned
// open and no overall timeout cuts it (the connection and the headers
// still have theirs).
func (c *kubeClient) stream(ctx context.Context, op, u string) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, fmt.Errorf("satauth: %s: %w", op, err)
		}
		req.Header.Set("Accept", acceptMeta)
		var sent string
		if c.token != nil {
			if sent, err = c.token.get(attempt > 0); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			req.Header.Set("Authorization", "Bearer "+sent)
		}
		resp, err := c.watchHC.Do(req)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
		}
		if resp.StatusCode == http.StatusOK {
			return resp, nil
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 && c.token != nil {
			if fresh, err := c.token.get(true); err == nil && fresh != sent {
				continue
			}
		}
		if resp.StatusCode == http.StatusGone {
			return nil, errGone
		}
		var st status
		_ = json.Unmarshal(data, &st)
		return nil, &APIError{Op: op, StatusCode: resp.StatusCode, Message: truncate(st.Message, 256)}
	}
}
