package abac

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/mqttauth/mqttauth/auth"
)

// maxTopicLen is the longest topic MQTT can carry.
const maxTopicLen = 65535

type levelKind uint8

const (
	levelLiteral levelKind = iota
	levelPlus
	levelHash
	levelVar
)

type varKind uint8

const (
	varClientID varKind = iota + 1
	varUsername
	varAttribute
)

// variable is {principal.clientId}, {principal.username} or
// {principal.attributes.NAME}.
type variable struct {
	kind varKind
	attr string
}

func (v variable) String() string {
	switch v.kind {
	case varClientID:
		return "{principal.clientId}"
	case varUsername:
		return "{principal.username}"
	}
	return "{principal.attributes." + v.attr + "}"
}

// value returns the principal's value for v, and false when the principal
// has none or the value could widen access (see validValue).
func (v variable) value(p *auth.Principal) (string, bool) {
	var s string
	switch v.kind {
	case varClientID:
		s = p.ClientID()
	case varUsername:
		s = p.Username()
	case varAttribute:
		s, _ = p.Attribute(v.attr)
	}
	return s, validValue(s)
}

// validValue reports whether a principal's value may fill a variable: it
// must be non-empty and hold no wildcard, level separator or NUL, so that
// substituting it can never widen a topic filter or add a level.
func validValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '+', '#', '/', 0:
			return false
		}
	}
	return true
}

// parseVariable parses a whole "{principal....}" string.
func parseVariable(s string) (variable, error) {
	inner, ok := strings.CutPrefix(s, "{principal.")
	if !ok || !strings.HasSuffix(inner, "}") {
		return variable{}, fmt.Errorf("%w: %q: variables are {principal.clientId}, {principal.username} and {principal.attributes.NAME}", ErrInvalidVariable, s)
	}
	inner = inner[:len(inner)-1]
	switch {
	case inner == "clientId":
		return variable{kind: varClientID}, nil
	case inner == "username":
		return variable{kind: varUsername}, nil
	case strings.HasPrefix(inner, "attributes."):
		name := inner[len("attributes."):]
		if name == "" || strings.ContainsAny(name, "{}") {
			return variable{}, fmt.Errorf("%w: %q: attribute name missing or malformed", ErrInvalidVariable, s)
		}
		return variable{kind: varAttribute, attr: name}, nil
	}
	return variable{}, fmt.Errorf("%w: %q: variables are {principal.clientId}, {principal.username} and {principal.attributes.NAME}", ErrInvalidVariable, s)
}

type level struct {
	kind levelKind
	lit  string
	v    variable
}

// parsePattern validates a policy topic filter and splits it into levels.
func parsePattern(s string) ([]level, error) {
	switch {
	case s == "":
		return nil, fmt.Errorf("%w: empty", ErrInvalidTopic)
	case len(s) > maxTopicLen:
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalidTopic, maxTopicLen)
	case !utf8.ValidString(s):
		return nil, fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidTopic, s)
	case strings.IndexByte(s, 0) >= 0:
		return nil, fmt.Errorf("%w: %q contains NUL", ErrInvalidTopic, s)
	case strings.HasPrefix(s, "$share/"):
		return nil, fmt.Errorf("%w: %q: write the filter without $share/GROUP/; a shared subscription is checked on its filter", ErrInvalidTopic, s)
	}
	parts := strings.Split(s, "/")
	levels := make([]level, len(parts))
	for i, part := range parts {
		switch {
		case part == "+":
			levels[i] = level{kind: levelPlus}
		case part == "#":
			if i != len(parts)-1 {
				return nil, fmt.Errorf("%w: %q: '#' must be the last level", ErrInvalidTopic, s)
			}
			levels[i] = level{kind: levelHash}
		case strings.ContainsAny(part, "+#"):
			return nil, fmt.Errorf("%w: %q: a wildcard must fill a whole level", ErrInvalidTopic, s)
		case strings.ContainsAny(part, "{}"):
			if !strings.HasPrefix(part, "{") || !strings.HasSuffix(part, "}") || strings.Count(part, "{") != 1 || strings.Count(part, "}") != 1 {
				return nil, fmt.Errorf("%w: %q: a variable must fill a whole topic level", ErrInvalidVariable, s)
			}
			v, err := parseVariable(part)
			if err != nil {
				return nil, err
			}
			levels[i] = level{kind: levelVar, v: v}
		default:
			levels[i] = level{kind: levelLiteral, lit: part}
		}
	}
	return levels, nil
}

// validTopicName reports whether s is a topic name a client may publish to.
func validTopicName(s string) bool {
	if s == "" || len(s) > maxTopicLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '+', '#', 0:
			return false
		}
	}
	return true
}

// validFilter reports whether s is a valid topic filter (no $share prefix).
func validFilter(s string) bool {
	if s == "" || len(s) > maxTopicLen {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '/' {
			if s[i] == 0 {
				return false
			}
			continue
		}
		lvl := s[start:i]
		if len(lvl) > 1 {
			for j := 0; j < len(lvl); j++ {
				if lvl[j] == '+' || lvl[j] == '#' {
					return false
				}
			}
		} else if lvl == "#" && i != len(s) {
			return false
		}
		start = i + 1
	}
	return true
}

// subscriptionFilter returns the filter a SUBSCRIBE topic filter asks for:
// the filter itself, or for a shared subscription "$share/GROUP/FILTER" the
// FILTER [MQTT-4.8.2]. ok is false when the filter is invalid.
func subscriptionFilter(s string) (filter string, ok bool) {
	if rest, shared := strings.CutPrefix(s, "$share/"); shared {
		group, f, found := strings.Cut(rest, "/")
		if !found || group == "" || strings.ContainsAny(group, "+#\x00") {
			return "", false
		}
		s = f
	}
	return s, validFilter(s)
}

// covers reports whether every topic that the filter levels f can match is
// matched by the policy pattern pat with p's values substituted. It is the
// plain definition, used by Explain and as the reference for the index.
func covers(pat []level, f []string, p *auth.Principal) bool {
	for i := 0; ; i++ {
		if i == len(f) {
			// "a/#" also matches "a" [MQTT-4.7.1-2].
			return i == len(pat) || (i == len(pat)-1 && pat[i].kind == levelHash)
		}
		if i == len(pat) {
			return false
		}
		fl := f[i]
		// A leading wildcard does not match a topic beginning with '$'
		// [MQTT-4.7.2-1].
		dollar := i == 0 && strings.HasPrefix(fl, "$")
		switch pl := pat[i]; pl.kind {
		case levelHash:
			return !dollar
		case levelPlus:
			if fl == "#" {
				// "#" matches one or more levels, and so does "+/#"; at
				// any other depth "#" also matches the parent.
				return i == 0 && len(pat) == 2 && pat[1].kind == levelHash
			}
			if dollar {
				return false
			}
		case levelLiteral:
			if fl != pl.lit {
				return false
			}
		case levelVar:
			v, ok := pl.v.value(p)
			if !ok || fl != v {
				return false
			}
		}
	}
}

// resolve returns pat with p's values substituted, and false when a
// variable has no valid value.
func resolve(pat []level, p *auth.Principal) (string, bool) {
	var b strings.Builder
	for i, l := range pat {
		if i > 0 {
			b.WriteByte('/')
		}
		switch l.kind {
		case levelPlus:
			b.WriteByte('+')
		case levelHash:
			b.WriteByte('#')
		case levelLiteral:
			b.WriteString(l.lit)
		case levelVar:
			v, ok := l.v.value(p)
			if !ok {
				return "", false
			}
			b.WriteString(v)
		}
	}
	return b.String(), true
}

// clientIDPattern is a Connect client id pattern: a literal or a variable,
// optionally followed by '*' (prefix match).
type clientIDPattern struct {
	lit   string
	v     variable // kind 0: literal
	glob  bool
	isVar bool
}

func parseClientIDPattern(s string) (clientIDPattern, error) {
	if s == "" {
		return clientIDPattern{}, fmt.Errorf("%w: empty client id", ErrInvalidValue)
	}
	var c clientIDPattern
	body := s
	if strings.HasSuffix(s, "*") {
		c.glob = true
		body = s[:len(s)-1]
	}
	if strings.Contains(body, "*") {
		return clientIDPattern{}, fmt.Errorf("%w: %q: '*' is allowed only at the end", ErrInvalidValue, s)
	}
	if strings.ContainsAny(body, "{}") {
		if !strings.HasPrefix(body, "{") || !strings.HasSuffix(body, "}") || strings.Count(body, "{") != 1 || strings.Count(body, "}") != 1 {
			return clientIDPattern{}, fmt.Errorf("%w: %q: a variable must be the whole client id, optionally followed by '*'", ErrInvalidVariable, s)
		}
		v, err := parseVariable(body)
		if err != nil {
			return clientIDPattern{}, err
		}
		c.v, c.isVar = v, true
		return c, nil
	}
	c.lit = body
	return c, nil
}

func (c clientIDPattern) matches(id string, p *auth.Principal) bool {
	want := c.lit
	if c.isVar {
		v, ok := c.v.value(p)
		if !ok {
			return false
		}
		want = v
	}
	if c.glob {
		return strings.HasPrefix(id, want)
	}
	return id == want
}
