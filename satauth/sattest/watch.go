package sattest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// metaOf is the metadata of an account as the API shows it.
func metaOf(ns, name string, acct *account, rv int64) map[string]any {
	ann := make(map[string]string, len(acct.annotations))
	for k, v := range acct.annotations {
		ann[k] = v
	}
	return map[string]any{"name": name, "namespace": ns, "uid": acct.uid, "annotations": ann,
		"resourceVersion": strconv.FormatInt(rv, 10)}
}

// AddPod creates the pod namespace/name (for tokens bound to it, see
// TokenOptions.Pod) and returns its UID.
func (s *Server) AddPod(namespace, name string) string {
	s.tb.Helper()
	uid := uuid(s.tb)
	s.mu.Lock()
	defer s.mu.Unlock()
	p := &account{uid: uid}
	s.pods[namespace+"/"+name] = p
	s.notifyResLocked("pods", "ADDED", namespace, name, p)
	return uid
}

// DeletePod deletes a pod: the tokens bound to it stop being
// authenticated.
func (s *Server) DeletePod(namespace, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pods[namespace+"/"+name]; p != nil {
		delete(s.pods, namespace+"/"+name)
		s.notifyResLocked("pods", "DELETED", namespace, name, p)
	}
}

// notifyLocked records a change of a service account and wakes the
// watchers.
func (s *Server) notifyLocked(typ, ns, name string, acct *account) {
	s.notifyResLocked("serviceaccounts", typ, ns, name, acct)
}

func (s *Server) notifyResLocked(res, typ, ns, name string, acct *account) {
	s.rv++
	s.events = append(s.events, event{rv: s.rv, res: res, typ: typ, ns: ns, meta: metaOf(ns, name, acct, s.rv)})
	close(s.changed)
	s.changed = make(chan struct{})
}

// Compact forgets the recorded changes, as etcd's compaction does: a watch
// that resumes from an older resourceVersion is answered 410 Gone and must
// list again. It also ends the watches in progress.
func (s *Server) Compact() {
	s.mu.Lock()
	s.events = nil
	s.compacts = s.rv
	s.mu.Unlock()
	s.EndWatches()
}

// EndWatches ends every watch in progress, as an API server that restarts
// does; clients resume from their last resourceVersion.
func (s *Server) EndWatches() {
	s.mu.Lock()
	close(s.endWatch)
	s.endWatch = make(chan struct{})
	s.mu.Unlock()
}

func (s *Server) wrapList(group string, h func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
	list, watch := s.wrap(List, group, h), s.wrap(Watch, group, h)
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") != "" {
			watch(w, r)
			return
		}
		list(w, r)
	}
}

func (s *Server) listServiceAccounts(w http.ResponseWriter, r *http.Request) {
	s.list(w, r, "serviceaccounts", s.accounts)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, res string, objs map[string]*account) {
	ns := r.PathValue("ns")
	if r.URL.Query().Get("watch") != "" {
		s.watch(w, r, ns, res)
		return
	}
	s.mu.Lock()
	items := []any{}
	for key, acct := range objs {
		if n, name, _ := cut(key); n == ns {
			items = append(items, map[string]any{"metadata": metaOf(ns, name, acct, s.rv)})
		}
	}
	rv := s.rv
	s.mu.Unlock()
	writeJSON(w, map[string]any{"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
		"metadata": map[string]any{"resourceVersion": strconv.FormatInt(rv, 10)}, "items": items})
}

// listPods serves the pods added with AddPod.
func (s *Server) listPods(w http.ResponseWriter, r *http.Request) {
	s.list(w, r, "pods", s.pods)
}

func cut(key string) (ns, name string, ok bool) {
	for i := range len(key) {
		if key[i] == '/' {
			return key[:i], key[i+1:], true
		}
	}
	return "", "", false
}

// watch streams the events of namespace ns after the request's
// resourceVersion until timeoutSeconds, EndWatches or the client leaves.
func (s *Server) watch(w http.ResponseWriter, r *http.Request, ns, res string) {
	from, err := strconv.ParseInt(r.URL.Query().Get("resourceVersion"), 10, 64)
	if err != nil {
		writeStatus(w, http.StatusBadRequest, "resourceVersion required")
		return
	}
	timeout := time.Minute
	if t, err := strconv.Atoi(r.URL.Query().Get("timeoutSeconds")); err == nil && t > 0 {
		timeout = time.Duration(t) * time.Second
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	flush()
	enc := json.NewEncoder(w)
	for {
		s.mu.Lock()
		if from < s.compacts {
			s.mu.Unlock()
			_ = enc.Encode(map[string]any{"type": "ERROR", "object": map[string]any{
				"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": http.StatusGone,
				"reason": "Expired", "message": "too old resource version"}})
			flush()
			return
		}
		var out []event
		for _, e := range s.events {
			if e.rv > from && e.ns == ns && e.res == res {
				out = append(out, e)
			}
		}
		if s.rv > from {
			from = s.rv
		}
		changed, end := s.changed, s.endWatch
		s.mu.Unlock()
		for _, e := range out {
			_ = enc.Encode(map[string]any{"type": e.typ, "object": map[string]any{
				"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": e.meta}})
		}
		flush()
		select {
		case <-changed:
		case <-end:
			return
		case <-deadline.C:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// accessReview allows every SelfSubjectAccessReview but for the resources
// that Forbid made the broker lack.
func (s *Server) accessReview(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Spec struct {
			ResourceAttributes struct {
				Verb     string `json:"verb"`
				Resource string `json:"resource"`
			} `json:"resourceAttributes"`
		} `json:"spec"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&in); err != nil {
		writeStatus(w, http.StatusBadRequest, err.Error())
		return
	}
	s.mu.Lock()
	denied := s.forbid[in.Spec.ResourceAttributes.Resource]
	s.mu.Unlock()
	writeJSON(w, map[string]any{"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
		"status": map[string]any{"allowed": !denied}})
}
