package mochi_test

import (
	"context"
	"strconv"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	mochiauth "github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
)

// The same per-device policy as abac's BenchmarkAuthorize: for n rules, one
// rule per group of 100 devices selected by attributes with variable topics,
// one rule for every device, and one rule per device naming it by client id.
// mochi's ledger has no variables and no attributes, so its equivalent is
// one ACL rule per device with every topic spelt out, plus a final rule that
// denies the rest (mochi allows what no rule matches).
func layout(n int) (groups, devices int) {
	groups = max(1, n/100)
	return groups, n - groups - 1
}

func device(d, groups int) (id, group, site string) {
	return "dev-" + strconv.Itoa(d), "g-" + strconv.Itoa(d%groups), "s-" + strconv.Itoa(d%7)
}

func abacSpec(n int) abac.Spec {
	groups, devices := layout(n)
	spec := abac.Spec{}
	spec.Rules = append(spec.Rules, abac.Rule{
		Principals: abac.Principals{Attributes: []map[string]string{{"role": "device"}}},
		BrokerResources: []abac.BrokerResource{
			{Method: abac.MethodConnect, ClientIDs: []string{"dev-*"}},
			{Method: abac.MethodPublish, Topics: []string{"clients/{principal.clientId}/#"}},
		},
	})
	for g := range groups {
		gs := "g-" + strconv.Itoa(g)
		spec.Rules = append(spec.Rules, abac.Rule{
			Principals: abac.Principals{Attributes: []map[string]string{{"group": gs, "role": "device"}}},
			BrokerResources: []abac.BrokerResource{
				{Method: abac.MethodPublish, Topics: []string{"groups/" + gs + "/{principal.clientId}/+", "sites/{principal.attributes.site}/{principal.clientId}/data"}},
				{Method: abac.MethodSubscribe, Topics: []string{"groups/" + gs + "/+/status", "groups/" + gs + "/{principal.clientId}/commands/#"}},
			},
		})
	}
	for d := range devices {
		id, _, _ := device(d, groups)
		spec.Rules = append(spec.Rules, abac.Rule{
			Principals: abac.Principals{ClientIDs: []string{id}},
			BrokerResources: []abac.BrokerResource{
				{Method: abac.MethodPublish, Topics: []string{"devices/" + id + "/telemetry", "devices/" + id + "/state/+"}},
				{Method: abac.MethodSubscribe, Topics: []string{"devices/" + id + "/commands/#"}},
			},
		})
	}
	return spec
}

func mochiLedger(n int) *mochiauth.Ledger {
	groups, devices := layout(n)
	l := &mochiauth.Ledger{}
	for d := range devices {
		id, g, s := device(d, groups)
		l.ACL = append(l.ACL, mochiauth.ACLRule{
			Client: mochiauth.RString(id),
			Filters: mochiauth.Filters{
				mochiauth.RString("clients/" + id + "/#"):                   mochiauth.WriteOnly,
				mochiauth.RString("groups/" + g + "/" + id + "/+"):          mochiauth.WriteOnly,
				mochiauth.RString("sites/" + s + "/" + id + "/data"):        mochiauth.WriteOnly,
				mochiauth.RString("devices/" + id + "/telemetry"):           mochiauth.WriteOnly,
				mochiauth.RString("devices/" + id + "/state/+"):             mochiauth.WriteOnly,
				mochiauth.RString("groups/" + g + "/+/status"):              mochiauth.ReadOnly,
				mochiauth.RString("groups/" + g + "/" + id + "/commands/#"): mochiauth.ReadOnly,
				mochiauth.RString("devices/" + id + "/commands/#"):          mochiauth.ReadOnly,
			},
		})
	}
	l.ACL = append(l.ACL, mochiauth.ACLRule{Filters: mochiauth.Filters{"#": mochiauth.Deny}})
	return l
}

type op struct {
	name  string
	write bool
	topic string
	allow bool
}

func ops(id, g string) []op {
	return []op{
		{"publish", true, "groups/" + g + "/" + id + "/temp", true},
		{"publish_denied", true, "devices/dev-other/telemetry", false},
		{"subscribe", false, "groups/" + g + "/" + id + "/commands/#", true},
		{"subscribe_denied", false, "groups/" + g + "/#", false},
	}
}

// BenchmarkACL runs the same checks through abac and through mochi's ledger
// (the ACLOk of hooks/auth, which its OnACLCheck calls), side by side.
func BenchmarkACL(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{10, 1000, 100000} {
		groups, devices := layout(n)
		id, g, s := device(devices/2, groups)
		x, err := abac.Compile(abacSpec(n))
		if err != nil {
			b.Fatal(err)
		}
		p := auth.NewPrincipal(auth.PrincipalInfo{ClientID: id,
			Attributes: map[string]string{"role": "device", "group": g, "site": s}})
		l := mochiLedger(n)
		cl := &mqtt.Client{ID: id}
		for _, o := range ops(id, g) {
			kind := auth.Subscribe
			if o.write {
				kind = auth.Publish
			}
			a := auth.Action{Kind: kind, Topic: o.topic}
			if got := x.Authorize(ctx, p, a).Allowed; got != o.allow {
				b.Fatalf("abac %s rules=%d: allowed=%v", o.name, n, got)
			}
			if _, got := l.ACLOk(cl, o.topic, o.write); got != o.allow {
				b.Fatalf("mochi %s rules=%d: allowed=%v", o.name, n, got)
			}
			b.Run("impl=abac/op="+o.name+"/rules="+strconv.Itoa(n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					x.Authorize(ctx, p, a)
				}
			})
			b.Run("impl=mochi/op="+o.name+"/rules="+strconv.Itoa(n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					l.ACLOk(cl, o.topic, o.write)
				}
			})
		}
	}
}
