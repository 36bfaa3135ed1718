package abac

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Spec is a policy document: the rules list of an Azure IoT Operations
// BrokerAuthorization resource, plus the explicit deny-all switch.
//
// In a file it is either a bare document
//
//	rules:
//	  - principals: {...}
//	    brokerResources: [...]
//
// or the whole BrokerAuthorization resource, whose
// spec.authorizationPolicies.rules is read (the cache setting is accepted and
// ignored: see [Cache]).
type Spec struct {
	// DenyAll must be true when Rules is empty: a policy that allows
	// nothing is then written on purpose, never by an accident such as a
	// misspelt or mis-indented rules key. It cannot be combined with rules.
	DenyAll bool `json:"denyAll,omitempty"`
	// Rules allow actions. Nothing else does: what no rule allows is
	// denied.
	Rules []Rule `json:"rules"`
}

// Rule allows the principals it names to use its broker resources.
type Rule struct {
	Principals      Principals       `json:"principals"`
	BrokerResources []BrokerResource `json:"brokerResources"`
}

// Principals selects the principals a rule applies to. A principal is
// selected when its client id is one of ClientIDs, or its user name is one of
// Usernames, or it has every attribute of at least one map in Attributes.
// Matching is exact and case-sensitive.
type Principals struct {
	ClientIDs  []string            `json:"clientIds,omitempty"`
	Usernames  []string            `json:"usernames,omitempty"`
	Attributes []map[string]string `json:"attributes,omitempty"`
}

// Methods of a [BrokerResource].
const (
	MethodConnect   = "Connect"
	MethodPublish   = "Publish"
	MethodSubscribe = "Subscribe"
)

// BrokerResource is an action a rule allows.
//
// Connect takes optional ClientIDs (exact, or a prefix followed by a final
// "*"; absent means any client id) and no Topics. Publish and Subscribe take
// Topics (MQTT topic filters with "+" and "#") and no ClientIDs. Client ids
// and topic levels may be variables, {principal.clientId},
// {principal.username} or {principal.attributes.NAME}: a variable fills a
// whole topic level, or a whole client id optionally followed by "*".
type BrokerResource struct {
	Method    string   `json:"method"`
	Topics    []string `json:"topics,omitempty"`
	ClientIDs []string `json:"clientIds,omitempty"`
}

// ParseSpec decodes a policy document from YAML or JSON and validates it.
// Unknown fields, duplicate keys and every error that [Compile] reports are
// errors; a [*PolicyError] says where.
func ParseSpec(data []byte) (Spec, error) {
	spec, err := decodeSpec(data)
	if err != nil {
		return Spec{}, err
	}
	if _, err := compile(spec); err != nil {
		return Spec{}, err
	}
	return spec, nil
}

// Parse decodes a policy document from YAML or JSON and compiles it.
func Parse(data []byte) (*Policy, error) {
	spec, err := decodeSpec(data)
	if err != nil {
		return nil, err
	}
	return compile(spec)
}

// ParseNamed is [Parse] for a policy that names itself in its decisions
// (auth.Decision.Policy, "BrokerAuthorization abac-authz"), so that an
// audit record of a deny says which policy found no rule.
func ParseNamed(data []byte, name string) (*Policy, error) {
	x, err := Parse(data)
	if err != nil {
		return nil, err
	}
	x.name = name
	return x, nil
}

// LoadFile reads and compiles the policy file at path.
func LoadFile(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("abac: %w", err)
	}
	return Parse(data)
}

func docErr(field string, err error) error { return &PolicyError{Rule: -1, Field: field, Err: err} }

func decodeSpec(data []byte) (Spec, error) {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return Spec{}, docErr("", fmt.Errorf("%w: %v", ErrSyntax, err))
	}
	j = bytes.TrimSpace(j)
	if len(j) == 0 || bytes.Equal(j, []byte("null")) {
		return Spec{}, docErr("", fmt.Errorf("%w: empty document", ErrMissing))
	}
	if j[0] == '[' {
		// The bare rules array, as the Azure portal takes it.
		j = append(append([]byte(`{"rules":`), j...), '}')
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(j, &top); err != nil {
		return Spec{}, docErr("", fmt.Errorf("%w: the document must be a BrokerAuthorization resource, its authorizationPolicies mapping ({rules: [...]}) or a rules array", ErrSyntax))
	}
	prefix := ""
	if _, ok := top["spec"]; ok || top["kind"] != nil || top["apiVersion"] != nil {
		// The BrokerAuthorization resource.
		for k := range top {
			switch k {
			case "apiVersion", "kind", "metadata", "spec", "status":
			default:
				return Spec{}, docErr(k, ErrUnknownField)
			}
		}
		if raw, ok := top["kind"]; ok {
			var kind string
			if err := json.Unmarshal(raw, &kind); err != nil || kind != "BrokerAuthorization" {
				return Spec{}, docErr("kind", fmt.Errorf("%w: kind must be BrokerAuthorization", ErrInvalidValue))
			}
		}
		var spec map[string]json.RawMessage
		if err := json.Unmarshal(top["spec"], &spec); err != nil || spec == nil {
			return Spec{}, docErr("spec", fmt.Errorf("%w: spec must be a mapping", ErrMissing))
		}
		for k := range spec {
			if k != "authorizationPolicies" {
				return Spec{}, docErr("spec."+k, ErrUnknownField)
			}
		}
		top = nil
		if err := json.Unmarshal(spec["authorizationPolicies"], &top); err != nil || top == nil {
			return Spec{}, docErr("spec.authorizationPolicies", fmt.Errorf("%w: authorizationPolicies must be a mapping", ErrMissing))
		}
		prefix = "spec.authorizationPolicies."
		if raw, ok := top["cache"]; ok {
			var c string
			if err := json.Unmarshal(raw, &c); err != nil || (c != "Enabled" && c != "Disabled") {
				return Spec{}, docErr(prefix+"cache", fmt.Errorf("%w: cache must be Enabled or Disabled", ErrInvalidValue))
			}
			delete(top, "cache")
		}
	}
	var spec Spec
	for k, raw := range top {
		switch k {
		case "denyAll":
			if err := json.Unmarshal(raw, &spec.DenyAll); err != nil {
				return Spec{}, docErr(prefix+k, fmt.Errorf("%w: denyAll must be a boolean", ErrSyntax))
			}
		case "rules":
		default:
			return Spec{}, docErr(prefix+k, ErrUnknownField)
		}
	}
	var rules []json.RawMessage
	if raw, ok := top["rules"]; ok {
		if err := json.Unmarshal(raw, &rules); err != nil {
			return Spec{}, docErr(prefix+"rules", fmt.Errorf("%w: rules must be a list", ErrSyntax))
		}
	}
	spec.Rules = make([]Rule, len(rules))
	for i, raw := range rules {
		if err := decodeRule(raw, &spec.Rules[i]); err != nil {
			var pe *PolicyError
			if errors.As(err, &pe) {
				pe.Rule = i
			}
			return Spec{}, err
		}
	}
	return spec, nil
}

func decodeRule(raw json.RawMessage, r *Rule) error {
	var rr struct {
		Principals      json.RawMessage   `json:"principals"`
		BrokerResources []json.RawMessage `json:"brokerResources"`
	}
	if field, err := strictDecode(raw, &rr); err != nil {
		return &PolicyError{Field: field, Err: err}
	}
	if len(rr.Principals) > 0 {
		if field, err := strictDecode(rr.Principals, &r.Principals); err != nil {
			return &PolicyError{Field: join("principals", field), Err: err}
		}
	}
	r.BrokerResources = make([]BrokerResource, len(rr.BrokerResources))
	for j, raw := range rr.BrokerResources {
		if field, err := strictDecode(raw, &r.BrokerResources[j]); err != nil {
			return &PolicyError{Field: join("brokerResources["+strconv.Itoa(j)+"]", field), Err: err}
		}
	}
	return nil
}

func join(a, b string) string {
	if b == "" {
		return a
	}
	return a + "." + b
}

// strictDecode decodes raw into v, refusing unknown fields; it returns the
// offending field's name where it knows it.
func strictDecode(raw json.RawMessage, v any) (string, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	err := d.Decode(v)
	if err == nil {
		return "", nil
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, `json: unknown field "`); ok {
		return strings.TrimSuffix(name, `"`), ErrUnknownField
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		what, hint := te.Field, ""
		if what == "" {
			what = "the value"
		}
		if te.Type.Kind() == reflect.String {
			hint = " (quote it in YAML)"
		}
		return te.Field, fmt.Errorf("%w: %s must be %s, not %s%s", ErrSyntax, what, typeName(te.Type.String()), te.Value, hint)
	}
	return "", fmt.Errorf("%w: %v", ErrSyntax, err)
}

func typeName(t string) string {
	switch t {
	case "string":
		return "a string"
	case "[]string", "[]map[string]string":
		return "a list"
	case "map[string]string", "abac.Principals", "struct { Principals json.RawMessage \"json:\\\"principals\\\"\"; BrokerResources []json.RawMessage \"json:\\\"brokerResources\\\"\" }", "abac.BrokerResource":
		return "a mapping"
	case "[]json.RawMessage":
		return "a list"
	}
	return t
}

func itoa(i int) string { return strconv.Itoa(i) }
