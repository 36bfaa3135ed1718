package aioconfig

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/mqttauth/mqttauth/internal/kubeapi"
)

// The list+watch side of Cluster: what the API holds, followed.

// path is the collection path of a resource of the namespace, with an
// optional field selector.
func (k *Cluster) path(resource, name string) string {
	ns := url.PathEscape(k.cfg.Namespace)
	p := "/apis/" + Group + "/" + k.cfg.Version + "/namespaces/" + ns + "/" + resource
	if resource == "configmaps" || resource == "secrets" {
		p = "/api/v1/namespaces/" + ns + "/" + resource
	}
	if name != "" {
		p += "?" + url.Values{"fieldSelector": {"metadata.name=" + name}}.Encode()
	}
	return p
}

// start starts a watch per resource and the rebuild loop.
func (k *Cluster) start() {
	for _, r := range []string{ResourceListeners, ResourceAuthentications, ResourceAuthorizations} {
		k.follow(r, "")
	}
	k.mu.Lock()
	names := make([]string, 0, len(k.maps))
	for key := range k.maps {
		names = append(names, key)
	}
	k.mu.Unlock()
	for _, key := range names {
		r, name, _ := strings.Cut(key, "/")
		k.follow(r, name)
	}
	k.wg.Go(k.rebuildLoop)
}

// follow runs the list+watch loop of a resource (name empty) or of one
// ConfigMap or Secret.
func (k *Cluster) follow(resource, name string) {
	ctx := k.ctx
	f := kubeapi.Follow{
		Client: k.kube, Op: "watch " + resource, Path: k.path(resource, name),
		Failed: func(err error, backoff time.Duration) {
			level := slog.LevelWarn
			if errors.Is(err, ErrForbidden) {
				level = slog.LevelError
			}
			k.log.LogAttrs(ctx, level, "aioconfig: watch failed; retrying", slog.String("namespace", k.cfg.Namespace),
				slog.String("resource", resource), slog.String("name", name), slog.Duration("backoff", backoff), slog.Any("err", err))
		},
		Resumed: func() {
			k.log.LogAttrs(ctx, slog.LevelInfo, "aioconfig: watch resumed", slog.String("namespace", k.cfg.Namespace),
				slog.String("resource", resource), slog.String("name", name))
		},
	}
	if name == "" {
		f.Relist = func(ctx context.Context) (string, error) { return k.relist(ctx, resource) }
		f.Event = func(typ string, o kubeapi.Object) { k.resourceEvent(resource, typ, o) }
	} else {
		f.Relist = func(ctx context.Context) (string, error) { return k.relistKeyed(ctx, resource, name) }
		f.Event = func(typ string, o kubeapi.Object) { k.keyedEvent(resource, name, typ, o) }
	}
	k.wg.Go(func() { f.Run(ctx) })
}

// relist lists a resource and replaces what is known of it.
func (k *Cluster) relist(ctx context.Context, resource string) (string, error) {
	seen := map[string]kubeapi.Object{}
	rv, err := k.kube.List(ctx, "list "+resource, k.path(resource, ""), "", func(o kubeapi.Object) { seen[o.Meta.Name] = o })
	if err != nil {
		return "", err
	}
	k.mu.Lock()
	changed := !sameObjects(k.resources[resource], seen)
	k.resources[resource] = seen
	k.mu.Unlock()
	if changed {
		k.trigger()
	}
	return rv, nil
}

func sameObjects(a, b map[string]kubeapi.Object) bool {
	if len(a) != len(b) {
		return false
	}
	for n, o := range a {
		if p, ok := b[n]; !ok || p.Meta.ResourceVersion != o.Meta.ResourceVersion {
			return false
		}
	}
	return true
}

func (k *Cluster) resourceEvent(resource, typ string, o kubeapi.Object) {
	k.mu.Lock()
	if k.resources[resource] == nil {
		k.resources[resource] = map[string]kubeapi.Object{}
	}
	if typ == "DELETED" {
		delete(k.resources[resource], o.Meta.Name)
	} else {
		k.resources[resource][o.Meta.Name] = o
	}
	k.mu.Unlock()
	k.trigger()
}

// relistKeyed lists one ConfigMap or Secret by name.
func (k *Cluster) relistKeyed(ctx context.Context, resource, name string) (string, error) {
	var found *kubeapi.Object
	rv, err := k.kube.List(ctx, "list "+resource, k.path(resource, name), "", func(o kubeapi.Object) {
		if o.Meta.Name == name {
			found = &o
		}
	})
	if err != nil {
		return "", err
	}
	typ := "DELETED"
	var o kubeapi.Object
	if found != nil {
		typ, o = "ADDED", *found
	}
	k.keyedEvent(resource, name, typ, o)
	return rv, nil
}

// keyedEvent stores a ConfigMap or Secret, in memory only.
func (k *Cluster) keyedEvent(resource, name, typ string, o kubeapi.Object) {
	if o.Meta.Name != "" && o.Meta.Name != name {
		return
	}
	key := resource + "/" + name
	kd := &keyed{exists: typ != "DELETED"}
	if kd.exists {
		var err error
		if kd.data, err = decodeData(resource, o.Raw); err != nil {
			k.log.LogAttrs(k.ctx, slog.LevelError, "aioconfig: undecodable object; keeping the last version", slog.String("resource", resource), slog.String("name", name), slog.Any("err", err))
			return
		}
	}
	k.mu.Lock()
	prev := k.maps[key]
	if prev != nil && prev.exists == kd.exists && maps2Equal(prev.data, kd.data) {
		k.maps[key] = kd
		k.mu.Unlock()
		return
	}
	// A deleted object stays in memory: the sources keep their last good
	// content while the reference is reported as missing.
	k.maps[key] = kd
	k.mu.Unlock()
	k.trigger()
}

func maps2Equal(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for n, v := range a {
		if w, ok := b[n]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// decodeData returns the keys of a ConfigMap (data and binaryData) or a
// Secret (data, base64).
func decodeData(resource string, raw json.RawMessage) (map[string][]byte, error) {
	var obj struct {
		Data       map[string]string `json:"data"`
		BinaryData map[string]string `json:"binaryData"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for key, v := range obj.Data {
		if resource == "secrets" {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return nil, fmt.Errorf("data.%s: %w", key, err)
			}
			out[key] = b
		} else {
			out[key] = []byte(v)
		}
	}
	for key, v := range obj.BinaryData {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("binaryData.%s: %w", key, err)
		}
		out[key] = b
	}
	return out, nil
}

// trigger asks the rebuild loop for a rebuild.
func (k *Cluster) trigger() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// rebuildLoop rebuilds after each burst of changes.
func (k *Cluster) rebuildLoop() {
	for {
		select {
		case <-k.ctx.Done():
			return
		case <-k.kick:
		}
		t := time.NewTimer(k.cfg.Debounce)
		select {
		case <-k.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		k.rebuild(k.ctx)
	}
}
