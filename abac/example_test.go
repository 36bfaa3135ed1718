package abac_test

import (
	"context"
	"fmt"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
)

func ExampleParse() {
	policy, err := abac.Parse([]byte(`
rules:
  - principals:
      attributes:
        - group: thermostat_group
    brokerResources:
      - method: Connect
      - method: Publish
        topics: ["telemetry/temperature", "clients/{principal.clientId}/#"]
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	thermostat := auth.NewPrincipal(auth.PrincipalInfo{
		ClientID:   "thermostat-1",
		Attributes: map[string]string{"group": "thermostat_group"},
	})
	ctx := context.Background()
	for _, a := range []auth.Action{
		{Kind: auth.Connect},
		{Kind: auth.Publish, Topic: "telemetry/temperature"},
		{Kind: auth.Publish, Topic: "clients/thermostat-1/status"},
		{Kind: auth.Publish, Topic: "clients/thermostat-2/status"},
		{Kind: auth.Subscribe, Topic: "telemetry/temperature"},
	} {
		d := policy.Authorize(ctx, thermostat, a)
		fmt.Printf("%-9v %-28q allowed=%-5v rule=%s\n", a.Kind, a.Topic, d.Allowed, d.Rule)
	}
	// Output:
	// Connect   ""                           allowed=true  rule=rules[0].brokerResources[0]
	// Publish   "telemetry/temperature"      allowed=true  rule=rules[0].brokerResources[1]
	// Publish   "clients/thermostat-1/status" allowed=true  rule=rules[0].brokerResources[1]
	// Publish   "clients/thermostat-2/status" allowed=false rule=
	// Subscribe "telemetry/temperature"      allowed=false rule=
}

func ExampleParse_error() {
	_, err := abac.Parse([]byte(`
rules:
  - principals: {usernames: [heater]}
    brokerResources:
      - method: Subscribe
        topics: ["telemetry/{principal.username}-in"]
`))
	fmt.Println(err)
	// Output:
	// abac: rules[0].brokerResources[0].topics[0]: invalid variable: "telemetry/{principal.username}-in": a variable must fill a whole topic level
}

func ExamplePolicy_Explain() {
	policy, _ := abac.Parse([]byte(`
rules:
  - principals: {usernames: [heater]}
    brokerResources:
      - method: Subscribe
        topics: ["telemetry/temperature", "telemetry/humidity"]
`))
	heater := auth.NewPrincipal(auth.PrincipalInfo{Username: "heater"})
	e := policy.Explain(heater, auth.Action{Kind: auth.Subscribe, Topic: "telemetry/+"})
	fmt.Println("allowed:", e.Decision.Allowed)
	for _, s := range e.Steps {
		fmt.Printf("%s selected by %s: %s match=%v\n", s.Ref, s.Selector, s.Pattern, s.Match)
	}
	// Output:
	// allowed: false
	// rules[0].brokerResources[0] selected by usernames[0]: telemetry/temperature match=false
	// rules[0].brokerResources[0] selected by usernames[0]: telemetry/humidity match=false
}

func ExampleNewCache() {
	policy, _ := abac.Parse([]byte(`{"rules": [{"principals": {"clientIds": ["dev-1"]},
	  "brokerResources": [{"method": "Subscribe", "topics": ["devices/{principal.clientId}/#"]}]}]}`))
	// One Cache per session: the broker asks on every delivered message.
	cache := abac.NewCache(policy, 0)
	p := auth.NewPrincipal(auth.PrincipalInfo{ClientID: "dev-1"})
	a := auth.Action{Kind: auth.Subscribe, Topic: "devices/dev-1/commands/+"}
	fmt.Println(cache.Authorize(context.Background(), p, a).Allowed, cache.Len())
	// Output:
	// true 1
}
