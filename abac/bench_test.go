package abac_test

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
)

// benchSpec generates a per-device policy of n rules: one rule per device
// naming it by client id with literal topics, one rule per group of 100
// devices selected by attributes with variable topics, and one rule for
// every device by attribute.
func benchSpec(n int) abac.Spec {
	groups := max(1, n/100)
	devices := n - groups - 1
	spec := abac.Spec{}
	spec.Rules = append(spec.Rules, abac.Rule{
		Principals: abac.Principals{Attributes: []map[string]string{{"role": "device"}}},
		BrokerResources: []abac.BrokerResource{
			{Method: abac.MethodConnect, ClientIDs: []string{"dev-*"}},
			{Method: abac.MethodPublish, Topics: []string{"clients/{principal.clientId}/#"}},
		},
	})
	for g := range groups {
		gs := strconv.Itoa(g)
		spec.Rules = append(spec.Rules, abac.Rule{
			Principals: abac.Principals{Attributes: []map[string]string{{"group": "g-" + gs, "role": "device"}}},
			BrokerResources: []abac.BrokerResource{
				{Method: abac.MethodPublish, Topics: []string{"groups/g-" + gs + "/{principal.clientId}/+", "sites/{principal.attributes.site}/{principal.clientId}/data"}},
				{Method: abac.MethodSubscribe, Topics: []string{"groups/g-" + gs + "/+/status", "groups/g-" + gs + "/{principal.clientId}/commands/#"}},
			},
		})
	}
	for d := range devices {
		id := "dev-" + strconv.Itoa(d)
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

// benchPrincipal is a device in the middle of the policy.
func benchPrincipal(n int) (*auth.Principal, string, string) {
	groups := max(1, n/100)
	devices := max(1, n-groups-1)
	d := devices / 2
	id := "dev-" + strconv.Itoa(d)
	g := "g-" + strconv.Itoa(d%groups)
	return auth.NewPrincipal(auth.PrincipalInfo{ClientID: id, Username: "user-" + id,
		Attributes: map[string]string{"role": "device", "group": g, "site": "s-" + strconv.Itoa(d%7)}}), id, g
}

func BenchmarkAuthorize(b *testing.B) {
	for _, n := range []int{10, 1000, 100000} {
		x, err := abac.Compile(benchSpec(n))
		require.NoError(b, err)
		p, id, g := benchPrincipal(n)
		ops := []struct {
			name string
			a    auth.Action
		}{
			// A variable rule of the principal's attribute group.
			{"publish", pub("groups/" + g + "/" + id + "/temp")},
			// The device's own literal rule.
			{"publish_literal", pub("devices/" + id + "/state/on")},
			{"publish_denied", pub("devices/dev-other/telemetry")},
			{"subscribe", sub("groups/" + g + "/" + id + "/commands/#")},
			{"subscribe_shared", sub("$share/workers/groups/" + g + "/+/status")},
			{"subscribe_denied", sub("groups/" + g + "/#")},
			{"connect", connect},
		}
		for _, op := range ops {
			d := x.Authorize(ctx, p, op.a)
			require.Equal(b, op.name != "publish_denied" && op.name != "subscribe_denied", d.Allowed, "%s rules=%d", op.name, n)
			b.Run("op="+op.name+"/rules="+strconv.Itoa(n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					x.Authorize(ctx, p, op.a)
				}
			})
		}
		c := abac.NewCache(x, 0)
		for _, op := range ops[:1] {
			b.Run("op="+op.name+"_cached/rules="+strconv.Itoa(n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					c.Authorize(ctx, p, op.a)
				}
			})
		}
	}
}

func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		spec := benchSpec(n)
		b.Run("rules="+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := abac.Compile(spec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
