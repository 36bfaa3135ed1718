package nats

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNotExpressible marks a policy topic filter that NATS permissions
// cannot express without allowing more than the policy does.
var ErrNotExpressible = errors.New("nats: topic filter cannot be expressed as NATS permissions")

// Subject returns the NATS subject that nats-server's MQTT listener uses
// for an MQTT topic name or filter: each level becomes a token, levels are
// joined by '.', '+' becomes '*' and '#' becomes '>', a '.' inside a level
// becomes "//", and an empty level becomes the token "/". So "a/b" is
// "a.b", "a.b/c" is "a//b.c", "/a" is "/.a" and "a//b" is "a./.b". Topics
// holding white space or DEL have no subject: nats-server refuses them.
func Subject(topic string) (string, error) {
	if topic == "" {
		return "", fmt.Errorf("%w: empty topic", ErrNotExpressible)
	}
	if i := strings.IndexAny(topic, " \t\n\r\f\x7f"); i >= 0 {
		return "", fmt.Errorf("%w: %q holds white space or DEL, which nats-server refuses in MQTT topics", ErrNotExpressible, topic)
	}
	var b strings.Builder
	b.Grow(len(topic) + 4)
	for i, lvl := range strings.Split(topic, "/") {
		if i > 0 {
			b.WriteByte('.')
		}
		switch lvl {
		case "":
			b.WriteByte('/')
		case "+":
			b.WriteByte('*')
		case "#":
			b.WriteByte('>')
		default:
			b.WriteString(strings.ReplaceAll(lvl, ".", "//"))
		}
	}
	return b.String(), nil
}

// checkLevel reports whether a literal topic level of a policy filter (or a
// value substituted for a variable) maps to a literal NATS token: "*" and
// ">" would become NATS wildcards.
func checkLevel(lvl string) error {
	if lvl == "*" || lvl == ">" {
		return fmt.Errorf("%w: the level %q would be a NATS wildcard", ErrNotExpressible, lvl)
	}
	return nil
}

// checkFilter refuses the policy topic filters whose NATS form would allow
// more than the policy, for method "Publish" or "Subscribe". Variable
// levels ("{principal....}") are checked when their value is known.
func checkFilter(method, filter string) error {
	if err := checkShape(method, filter); err != nil {
		return err
	}
	for _, l := range strings.Split(filter, "/") {
		if strings.HasPrefix(l, "{") {
			continue
		}
		if err := checkLevel(l); err != nil {
			return fmt.Errorf("%w (in %q)", err, filter)
		}
	}
	if _, err := Subject(strings.NewReplacer("{", "", "}", "").Replace(filter)); err != nil {
		return err
	}
	return nil
}

// checkShape refuses the filters whose wildcards NATS cannot express: a
// leading wildcard, and for Subscribe a trailing '+'.
func checkShape(method, filter string) error {
	levels := strings.Split(filter, "/")
	if l := levels[0]; l == "+" || l == "#" {
		// [MQTT-4.7.2-1]: a filter beginning with a wildcard does not
		// match topics beginning with '$'; NATS '*' and '>' do.
		return fmt.Errorf("%w: %q begins with a wildcard, which in MQTT does not match topics beginning with '$' [MQTT-4.7.2-1] but in NATS does: name the first level", ErrNotExpressible, filter)
	}
	if method == "Subscribe" && levels[len(levels)-1] == "+" {
		// nats-server matches a requested subscription against the allow
		// list token by token, so an allowed "a.*" lets a client
		// subscribe "a.>", every topic below a/.
		return fmt.Errorf("%w: the Subscribe filter %q ends in '+': nats-server lets a user allowed %q subscribe %q, which matches topics the filter does not; list the topics, or grant a filter ending in '#'",
			ErrNotExpressible, filter, natsForm(filter), natsForm(filter[:len(filter)-1]+"#"))
	}
	return nil
}

func natsForm(filter string) string {
	s, err := Subject(filter)
	if err != nil {
		return filter
	}
	return s
}

// subjects returns the NATS subjects that allow what the MQTT filter f
// (variables substituted) allows: its subject and, for a filter ending in
// "/#", the parent level, which "#" also matches in MQTT [MQTT-4.7.1-2]
// and to which nats-server subscribes an MQTT client separately.
func subjects(f string) ([]string, error) {
	levels := strings.Split(f, "/")
	if l := levels[0]; l == "+" || l == "#" {
		return nil, fmt.Errorf("%w: %q begins with a wildcard", ErrNotExpressible, f)
	}
	for _, l := range levels {
		if err := checkLevel(l); err != nil {
			return nil, err
		}
	}
	s, err := Subject(f)
	if err != nil {
		return nil, err
	}
	if parent, ok := strings.CutSuffix(f, "/#"); ok {
		ps, err := Subject(parent)
		if err != nil {
			return nil, err
		}
		return []string{s, ps}, nil
	}
	return []string{s}, nil
}
