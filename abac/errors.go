package abac

import (
	"errors"
	"strings"
)

// Sentinel errors, for errors.Is. A [*PolicyError] wraps one of them.
var (
	// ErrUnknownField means the policy names a field this package does not
	// know: a typo would otherwise silently change what the policy allows.
	ErrUnknownField = errors.New("abac: unknown field")
	// ErrSyntax means the document is not valid YAML or JSON, or a field has
	// the wrong type.
	ErrSyntax = errors.New("abac: syntax error")
	// ErrMissing means a required field is absent or empty.
	ErrMissing = errors.New("abac: required field missing")
	// ErrInvalidValue means a field has a value outside its domain (an
	// unknown method, an empty user name, contradicting fields).
	ErrInvalidValue = errors.New("abac: invalid value")
	// ErrInvalidTopic means a topic filter is not a valid MQTT topic filter.
	ErrInvalidTopic = errors.New("abac: invalid topic filter")
	// ErrInvalidVariable means a variable is unknown or does not fill a
	// whole topic level.
	ErrInvalidVariable = errors.New("abac: invalid variable")
	// ErrEmptyPolicy means the policy has no rules and does not say
	// denyAll: true.
	ErrEmptyPolicy = errors.New("abac: empty rule list (write denyAll: true to deny everything)")
)

// PolicyError is an error in a policy document, located by rule index and
// field path.
type PolicyError struct {
	// Rule is the index of the rule in the rules list, or -1 for an error
	// outside any rule.
	Rule int
	// Field is the path of the field inside the rule
	// ("brokerResources[0].topics[1]"), or the document field when Rule is
	// -1 ("rules"); empty when the error concerns the whole rule or
	// document.
	Field string
	// Err is the cause; it wraps one of the package's sentinel errors.
	Err error
}

// Error returns "abac: rules[R].FIELD: cause".
func (e *PolicyError) Error() string {
	var b strings.Builder
	b.WriteString("abac: ")
	b.WriteString(e.Location())
	b.WriteString(": ")
	if e.Err == nil {
		b.WriteString("invalid policy")
	} else {
		b.WriteString(strings.TrimPrefix(e.Err.Error(), "abac: "))
	}
	return b.String()
}

// Location returns where the error is: "rules[2].brokerResources[0].topics[1]".
func (e *PolicyError) Location() string {
	switch {
	case e.Rule < 0 && e.Field == "":
		return "document"
	case e.Rule < 0:
		return e.Field
	case e.Field == "":
		return "rules[" + itoa(e.Rule) + "]"
	default:
		return "rules[" + itoa(e.Rule) + "]." + e.Field
	}
}

// Unwrap returns the cause.
func (e *PolicyError) Unwrap() error { return e.Err }
