package aioconfig

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/internal/kubeapi"
	"github.com/mqttauth/mqttauth/scramauth"
	"github.com/mqttauth/mqttauth/truststore"
)

// The rebuild side of Cluster: what the API holds, parsed, checked and
// applied, or reported.

// rebuild parses what the API holds now and puts it in force through
// the one reload path (Broker.Apply), or records an Event saying why not.
func (k *Cluster) rebuild(ctx context.Context) {
	c, err := k.parse(ctx)
	if err == nil {
		k.mu.Lock()
		b := k.broker
		k.mu.Unlock()
		if b != nil {
			var ch Changes
			if ch, err = b.Apply(ctx, c); err == nil {
				k.applied(ctx, ch)
			}
		}
	}
	if err != nil {
		k.log.LogAttrs(ctx, slog.LevelError, "aioconfig: invalid configuration in the cluster; keeping the last good one", errAttrs(err)...)
		k.report(ctx, err)
		return
	}
	k.mu.Lock()
	k.current = c
	reported := k.reported
	k.reported = map[string]string{}
	k.mu.Unlock()
	for key := range reported {
		kind, name, _ := strings.Cut(key, "/")
		k.log.LogAttrs(ctx, slog.LevelInfo, "aioconfig: resource valid again", slog.String("kind", kind), slog.String("name", name))
	}
}

// applied logs what a change put in force.
func (k *Cluster) applied(ctx context.Context, ch Changes) {
	if !ch.Any() {
		return
	}
	k.log.LogAttrs(ctx, slog.LevelInfo, "aioconfig: configuration applied", slog.String("namespace", k.cfg.Namespace),
		slog.Any("ports_added", ch.Added), slog.Any("ports_removed", ch.Removed), slog.Any("ports_changed", ch.Changed),
		slog.Any("authentications_rebuilt", ch.Authentications), slog.Any("policies", ch.Policies))
}

// parse builds a Config from the files and the resources as the API
// holds them now, fetches the ConfigMaps and Secrets it references that
// are not followed yet (and follows them, once the watches run), and
// checks it: references resolve, policies compile.
func (k *Cluster) parse(ctx context.Context) (*Config, error) {
	c, err := k.assemble()
	if err != nil {
		return nil, err
	}
	if k.cfg.Edit != nil {
		if err := k.cfg.Edit(c); err != nil {
			return nil, fmt.Errorf("aioconfig: %w", err)
		}
	}
	refs := references(c)
	for _, r := range refs {
		key := r.resource + "/" + r.name
		k.mu.Lock()
		_, known := k.maps[key]
		running := k.broker != nil
		k.mu.Unlock()
		if known {
			continue
		}
		if _, err := k.relistKeyed(ctx, r.resource, r.name); err != nil {
			return nil, fmt.Errorf("aioconfig: namespace %s: %w", k.cfg.Namespace, err)
		}
		if running {
			k.follow(r.resource, r.name)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for key, kd := range k.maps { // with the references fetched just now
		if kd.exists {
			c.objects[key] = kd.data
		} else {
			delete(c.objects, key)
		}
	}
	for _, r := range refs {
		kd := k.maps[r.resource+"/"+r.name]
		if kd == nil || !kd.exists {
			what := "ConfigMap"
			if r.resource == "secrets" {
				what = "Secret"
			}
			return nil, &Error{Source: "namespace " + k.cfg.Namespace, Kind: r.kind, Name: r.owner, Field: r.field, Value: r.name,
				Err: ErrNotFound, Hint: what + " " + r.name + " does not exist in namespace " + k.cfg.Namespace}
		}
		for _, key := range r.keys {
			if _, ok := kd.data[key]; !ok {
				return nil, &Error{Source: "namespace " + k.cfg.Namespace, Kind: r.kind, Name: r.owner, Field: r.field, Value: r.name,
					Err: ErrNotFound, Hint: "the Secret has no key " + key}
			}
		}
		if r.check == nil {
			continue
		}
		keys := r.keys // the keys the check is about, else every key
		if len(keys) == 0 {
			keys = make([]string, 0, len(kd.data))
			for key := range kd.data {
				keys = append(keys, key)
			}
			slices.Sort(keys)
		}
		what := "ConfigMap"
		if r.resource == "secrets" {
			what = "Secret"
		}
		for _, key := range keys {
			if err := r.check(kd.data[key]); err != nil {
				return nil, &Error{Source: "namespace " + k.cfg.Namespace, Kind: r.kind, Name: r.owner, Field: r.field, Value: r.name,
					Err: fmt.Errorf("%w: key %s of %s %s: %w", ErrInvalidValue, key, what, r.name, err)}
			}
		}
	}
	for _, a := range c.Authorizations {
		if _, err := abac.Parse(a.Policy); err != nil {
			field := ""
			var pe *abac.PolicyError
			if errors.As(err, &pe) {
				field = "spec.authorizationPolicies." + pe.Location()
			}
			return nil, &Error{Source: "namespace " + k.cfg.Namespace, Kind: KindAuthorization, Name: a.Name, Field: field, Err: fmt.Errorf("%w: %w", ErrInvalidValue, err)}
		}
	}
	return c, nil
}

// assemble parses the files and the resources into a new Config whose
// ConfigMaps and Secrets resolve in Dir.
func (k *Cluster) assemble() (*Config, error) {
	c := &Config{objects: map[string]map[string][]byte{}}
	if len(k.files) > 0 {
		c.dir = k.files[0].dir
	}
	for _, f := range k.files {
		if err := c.add(f.data, f.path, f.dir); err != nil {
			return nil, err
		}
	}
	k.mu.Lock()
	for key, kd := range k.maps {
		if kd.exists {
			c.objects[key] = kd.data // never changed: keyedEvent stores a new map
		}
	}
	var objs []kubeapi.Object
	var kinds []string
	for _, r := range []struct{ resource, kind string }{
		{ResourceListeners, KindListener}, {ResourceAuthentications, KindAuthentication}, {ResourceAuthorizations, KindAuthorization},
	} {
		names := make([]string, 0, len(k.resources[r.resource]))
		for n := range k.resources[r.resource] {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			objs = append(objs, k.resources[r.resource][n])
			kinds = append(kinds, r.kind)
		}
	}
	k.mu.Unlock()
	source := "namespace " + k.cfg.Namespace
	for i, o := range objs {
		doc, err := resourceDoc(o.Raw, kinds[i])
		d := docRef{source: source, kind: kinds[i], name: o.Meta.Name, dir: c.dir}
		if err != nil {
			return nil, d.err("", "", fmt.Errorf("%w: %v", ErrSyntax, err), "")
		}
		if err := c.addDoc(doc, d); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// resourceDoc is the document the loader reads for an object of the API:
// its kind, name and spec. The apiVersion is left out: a
// CustomResourceDefinition without a conversion webhook serves a stored
// object unchanged in every version, so the shape, not the version,
// tells v1 from v1beta1.
func resourceDoc(raw json.RawMessage, kind string) ([]byte, error) {
	var obj struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	doc := map[string]any{"kind": kind, "metadata": map[string]string{"name": obj.Metadata.Name}}
	if obj.Spec != nil {
		doc["spec"] = obj.Spec
	}
	return json.Marshal(doc)
}

// reference is a ConfigMap or Secret a resource names.
type reference struct {
	resource, name     string // "configmaps", NAME
	kind, owner, field string
	keys               []string           // keys that must exist
	check              func([]byte) error // the content of each key (of keys, when set), when set
}

// The checks of ConfigMaps of CA certificates and of CRLs: what the
// truststore would refuse to load is reported on the resource that names
// the ConfigMap (the truststore itself keeps its last good set).
func checkCerts(b []byte) error { _, err := truststore.ParseCertificates(b); return err }
func checkCRLs(b []byte) error  { _, err := truststore.ParseCRLs(b); return err }
func checkUsers(b []byte) error { _, err := scramauth.ParseUsers(b); return err }

// references lists the ConfigMaps and Secrets c names (values that are
// paths are files, not references).
func references(c *Config) []reference {
	var out []reference
	seen := map[string]bool{}
	var check func([]byte) error
	add := func(resource, name, kind, owner, field string, keys ...string) {
		if name == "" || strings.ContainsAny(name, `/\`) || seen[resource+"/"+name+field] {
			return
		}
		seen[resource+"/"+name+field] = true
		out = append(out, reference{resource: resource, name: name, kind: kind, owner: owner, field: field, keys: keys, check: check})
	}
	certs := func(resource, name, kind, owner, field string) {
		check = checkCerts
		add(resource, name, kind, owner, field)
		check = nil
	}
	for _, a := range c.Authentications {
		for i, m := range a.Methods {
			at := fmt.Sprintf("spec.authenticationMethods[%d].%s", i, settingsField(m.Method, a.API))
			switch {
			case m.X509 != nil:
				certs("configmaps", m.X509.TrustedClientCaCert, KindAuthentication, a.Name, at+".trustedClientCaCert")
				check = checkCRLs
				for j, crl := range m.X509.CRLs {
					add("configmaps", crl, KindAuthentication, a.Name, fmt.Sprintf("%s.crls[%d]", at, j))
				}
				check = nil
				if m.X509.Attributes != nil {
					add("secrets", m.X509.Attributes.SecretName, KindAuthentication, a.Name, at+".attributes.secretName")
				}
			case m.Custom != nil:
				certs("configmaps", cmp.Or(m.Custom.CACert, m.Custom.CACertConfigMap), KindAuthentication, a.Name, at+".caCert")
				if x := m.Custom.Auth; x != nil && x.X509 != nil {
					add("secrets", cmp.Or(x.X509.SecretRef, x.X509.SecretName), KindAuthentication, a.Name, at+".auth.x509", "tls.crt", "tls.key")
				}
			case m.SCRAM != nil:
				check = checkUsers
				add("secrets", m.SCRAM.UsersFile, KindAuthentication, a.Name, at+".usersFile", usersKey)
				check = nil
			case m.JWT != nil:
				certs("configmaps", m.JWT.CACert, KindAuthentication, a.Name, at+".caCert")
			}
		}
	}
	for _, l := range c.Listeners {
		for i, p := range l.Ports {
			if p.TLS != nil && p.TLS.Manual != nil {
				add("secrets", p.TLS.Manual.SecretRef, KindListener, l.Name, fmt.Sprintf("spec.ports[%d].tls.manual.secretRef", i), "tls.crt", "tls.key")
			}
		}
	}
	return out
}

// errAttrs are the log attributes of a configuration error: the
// resource's kind, name and field when it is an *Error.
func errAttrs(err error) []slog.Attr {
	var e *Error
	if errors.As(err, &e) {
		return []slog.Attr{slog.String("kind", e.Kind), slog.String("name", e.Name), slog.String("field", e.Field), slog.Any("err", err)}
	}
	return []slog.Attr{slog.Any("err", err)}
}

// report records a configuration error as a Warning Event on the
// resource it is about, once per distinct error of that resource.
func (k *Cluster) report(ctx context.Context, err error) {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, err := range errs {
		var e *Error
		if !errors.As(err, &e) || e.Kind == "" || e.Name == "" {
			continue
		}
		key := e.Kind + "/" + e.Name
		msg := err.Error()
		k.mu.Lock()
		dup := k.reported[key] == msg
		k.reported[key] = msg
		k.mu.Unlock()
		if !dup {
			k.event(ctx, e.Kind, e.Name, "Warning", "InvalidConfiguration", msg+"; the last good configuration is kept")
		}
	}
}

// event records an Event on a resource of the namespace; a failure is
// logged.
func (k *Cluster) event(ctx context.Context, kind, name, typ, reason, msg string) {
	ref := kubeapi.ObjectRef{APIVersion: Group + "/" + k.cfg.Version, Kind: kind, Namespace: k.cfg.Namespace, Name: name}
	k.mu.Lock()
	for r, kd := range map[string]string{ResourceListeners: KindListener, ResourceAuthentications: KindAuthentication, ResourceAuthorizations: KindAuthorization} {
		if kd == kind {
			if o, ok := k.resources[r][name]; ok {
				ref.UID = o.Meta.UID
			}
		}
	}
	k.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := k.kube.CreateEvent(ctx, kubeapi.Event{Object: ref, Type: typ, Reason: reason, Message: msg, Component: k.cfg.Component})
	if err != nil {
		k.log.LogAttrs(ctx, slog.LevelWarn, "aioconfig: recording an Event failed", slog.String("kind", kind), slog.String("name", name), slog.String("reason", reason), slog.Any("err", err))
	}
}
