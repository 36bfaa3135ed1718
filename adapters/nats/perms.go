package nats

import (
	"fmt"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
)

// Grants is what a policy gives a principal, as lists of MQTT topic
// filters: an *abac.Policy and an *abac.Watcher implement it.
type Grants interface {
	Grants(p *auth.Principal, kind auth.ActionKind) []abac.Grant
}

// CheckPolicy reports whether every Publish and Subscribe topic filter of
// spec can be expressed as NATS permissions; the error names the first that
// cannot (see [ErrNotExpressible] and the package documentation).
func CheckPolicy(spec abac.Spec) error {
	for i, r := range spec.Rules {
		for j, br := range r.BrokerResources {
			if br.Method != abac.MethodPublish && br.Method != abac.MethodSubscribe {
				continue
			}
			for k, t := range br.Topics {
				if err := checkFilter(br.Method, t); err != nil {
					return fmt.Errorf("nats: rules[%d].brokerResources[%d].topics[%d]: %w", i, j, k, err)
				}
			}
		}
	}
	return nil
}

// Permissions returns the NATS permissions of p: its Publish grants as the
// publish allow list and its Subscribe grants as the subscribe allow list,
// each MQTT filter mapped to the subject nats-server uses ([Subject]) and,
// for a filter ending in "/#", its parent level too. A principal with no
// Subscribe grant gets a subscribe deny of ">" (an empty allow list means
// "everything" to nats-server). A grant whose substituted value would make
// a NATS wildcard ("*" or ">") or holds characters nats-server refuses is
// left out: it allows nothing rather than more. The error reports a grant
// that [CheckPolicy] would have refused.
func Permissions(g Grants, p *auth.Principal) (*server.Permissions, error) {
	pub, err := allowList(g.Grants(p, auth.Publish), "Publish")
	if err != nil {
		return nil, err
	}
	sub, err := allowList(g.Grants(p, auth.Subscribe), "Subscribe")
	if err != nil {
		return nil, err
	}
	perms := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: sub},
	}
	if len(sub) == 0 {
		perms.Subscribe = &server.SubjectPermission{Deny: []string{">"}}
	}
	return perms, nil
}

func allowList(grants []abac.Grant, method string) ([]string, error) {
	out := make([]string, 0, len(grants)+2)
	seen := make(map[string]struct{}, len(grants)+2)
	for _, g := range grants {
		// Values never hold '+' or '#', so these refusals are the
		// policy's own (a reloaded policy that CheckPolicy did not see).
		if err := checkShape(method, g.Filter); err != nil {
			return nil, fmt.Errorf("nats: %s: %w", g.Rule, err)
		}
		subs, err := subjects(g.Filter)
		if err != nil {
			continue // a level NATS cannot carry as a literal: allow nothing
		}
		for _, s := range subs {
			if _, ok := seen[s]; !ok {
				seen[s] = struct{}{}
				out = append(out, s)
			}
		}
	}
	return out, nil
}
