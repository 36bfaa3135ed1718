package abac_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
)

// The policy remembers which rules select a principal, in a bounded cache
// keyed by the principal. With far more principals than cache slots, used
// concurrently, every decision still equals Explain's, which evaluates the
// rules without the index or the cache.
func TestSelectionCacheManyPrincipals(t *testing.T) {
	p, err := abac.Parse([]byte(`
rules:
  - principals: {attributes: [{role: device}]}
    brokerResources:
      - {method: Connect}
      - {method: Publish, topics: ["clients/{principal.clientId}/#"]}
  - principals: {attributes: [{role: device, group: g1}, {group: g2}]}
    brokerResources:
      - {method: Publish, topics: ["groups/{principal.attributes.group}/+"]}
  - principals: {usernames: [u7, u77], clientIds: [c3]}
    brokerResources:
      - {method: Subscribe, topics: ["admin/#"]}
`))
	require.NoError(t, err)
	principals := make([]*auth.Principal, 5000)
	for i := range principals {
		attrs := map[string]string{}
		if i%2 == 0 {
			attrs["role"] = "device"
		}
		if i%3 != 2 {
			attrs["group"] = fmt.Sprintf("g%d", i%3+1)
		}
		principals[i] = auth.NewPrincipal(auth.PrincipalInfo{
			Username: fmt.Sprintf("u%d", i%100), ClientID: fmt.Sprintf("c%d", i%10), Attributes: attrs,
		})
	}
	actions := []auth.Action{
		{Kind: auth.Connect},
		{Kind: auth.Publish, Topic: "clients/c3/x"},
		{Kind: auth.Publish, Topic: "groups/g1/x"},
		{Kind: auth.Publish, Topic: "groups/g2/y"},
		{Kind: auth.Subscribe, Topic: "admin/#"},
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for round := range 3 {
				for i := w; i < len(principals); i += 4 {
					pr := principals[(i+round*997)%len(principals)]
					for _, a := range actions {
						got := p.Authorize(ctx, pr, a)
						want := p.Explain(pr, a).Decision
						if got != want {
							t.Errorf("principal %d %v %q: Authorize %+v, Explain %+v", i, a.Kind, a.Topic, got, want)
							return
						}
					}
				}
			}
		})
	}
	wg.Wait()
}
