package aioconfig_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
)

// Each principal gets the grants of its own port's policy; an unknown
// listener gets none.
func TestGrantsPerPort(t *testing.T) {
	f := newFixture(t)
	pub, loc := f.broker.Ports[0], f.broker.Ports[1]
	thermo := auth.NewPrincipal(auth.PrincipalInfo{Username: "thermostat", Listener: pub.Name,
		Attributes: map[string]string{"group": "thermostat_group"}})
	got := f.broker.Grants(thermo, auth.Publish)
	require.Len(t, got, 1)
	require.Equal(t, "telemetry/temperature", got[0].Filter)

	sample := auth.NewPrincipal(auth.PrincipalInfo{Username: "sample", Listener: loc.Name})
	require.Equal(t, []abac.Grant{{Filter: "sandbox/#", Rule: "rules[0].brokerResources[1]"}}, f.broker.Grants(sample, auth.Publish))
	require.Empty(t, f.broker.Grants(sample, auth.Subscribe))

	stranger := auth.NewPrincipal(auth.PrincipalInfo{Username: "sample", Listener: "other:1"})
	require.Nil(t, f.broker.Grants(stranger, auth.Publish))
	require.Nil(t, f.broker.Grants(nil, auth.Publish))
}
