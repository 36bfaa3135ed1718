package aioconfig

import (
	"errors"
	"fmt"
	"strings"
)

// Conditions an [*Error] wraps, for errors.Is.
var (
	// ErrSyntax: not YAML or JSON, or a value of the wrong type.
	ErrSyntax = errors.New("syntax error")
	// ErrUnknownField: a field this API shape does not have.
	ErrUnknownField = errors.New("unknown field")
	// ErrUnknownKind: a document that is none of the resources read here.
	ErrUnknownKind = errors.New("unknown kind of document")
	// ErrMissing: a required field is missing or empty.
	ErrMissing = errors.New("missing")
	// ErrInvalidValue: a value out of its allowed set or range.
	ErrInvalidValue = errors.New("invalid value")
	// ErrDuplicate: two resources of one kind with one name, or two ports
	// on one address.
	ErrDuplicate = errors.New("duplicate")
	// ErrNotFound: a reference to a resource, ConfigMap, Secret or file
	// that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnsupported: an Azure IoT Operations feature this library does
	// not provide (WebSockets, cert-manager).
	ErrUnsupported = errors.New("not supported")
)

// Error says which document, field and value of a configuration is wrong,
// and how to fix it where the mistake is a known near-miss.
type Error struct {
	Source   string // the file ("broker.yaml")
	Document int    // 1 for the first document of the file
	Line     int    // the line the document starts on
	Kind     string // BrokerAuthentication, ... ("" when unknown)
	Name     string // metadata.name
	Field    string // spec.authenticationMethods[0].x509Settings.trustedClientCaCert
	Value    string // the value, when it is the problem (never a secret)
	Err      error  // one of the sentinels, possibly wrapping a cause
	Hint     string // the fix, when known
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("aioconfig: ")
	if e.Source != "" {
		b.WriteString(e.Source)
		if e.Document > 0 {
			fmt.Fprintf(&b, ": document %d (line %d)", e.Document, e.Line)
		}
		b.WriteString(": ")
	}
	if e.Kind != "" {
		fmt.Fprintf(&b, "%s %q: ", e.Kind, e.Name)
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		if e.Value != "" {
			fmt.Fprintf(&b, " %q", e.Value)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	if e.Hint != "" {
		b.WriteString(" (")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns the condition.
func (e *Error) Unwrap() error { return e.Err }
