package authtest

import (
	"testing"
	"time"
)

// TutorialPKI is the PKI of the Azure IoT Operations tutorial "TLS, X.509
// client authentication, and attribute-based access control (ABAC)
// authorization": a Contoso server chain for the broker and a Fabrikam
// client chain for four devices. Every client certificate is issued by the
// Fabrikam intermediate and presented with it (step's --bundle); the broker
// trusts the Fabrikam root.
type TutorialPKI struct {
	ContosoRoot         *CA   // "Contoso Root CA": clients trust it
	ContosoIntermediate *CA   // "Contoso Intermediate CA 1"
	Server              *Leaf // "mqtts-endpoint", SAN localhost, server authentication

	FabrikamRoot         *CA // "Fabrikam Root CA": the broker's trusted client CA
	FabrikamIntermediate *CA // "Fabrikam Intermediate CA 1"

	Thermostat *Leaf // "thermostat"
	Hygrometer *Leaf // "hygrometer"
	Heater     *Leaf // "heater"
	Lightbulb  *Leaf // "lightbulb"
}

// TutorialPolicy is the abac-authz policy of the same tutorial, in the JSON
// the tutorial enters in the portal, wrapped in a rules document (the
// format abac.Parse reads): the thermostat and hygrometer groups publish
// their telemetry, the Fabrikam intermediate's devices their heartbeat,
// and the user name heater subscribes to both telemetry topics. It matches
// TutorialPKI's certificates once their subjects are mapped to those
// attributes (aioconfig/testdata/seed003 holds the same resources).
const TutorialPolicy = `{"rules": [
  {"principals": {"attributes": [{"group": "thermostat_group"}]},
   "brokerResources": [{"method": "Connect"}, {"method": "Publish", "topics": ["telemetry/temperature"]}]},
  {"principals": {"attributes": [{"group": "hygrometer_group"}]},
   "brokerResources": [{"method": "Connect"}, {"method": "Publish", "topics": ["telemetry/humidity"]}]},
  {"principals": {"attributes": [{"manufacturer": "fabrikam"}]},
   "brokerResources": [{"method": "Connect"}, {"method": "Publish", "topics": ["health/heartbeat"]}]},
  {"principals": {"usernames": ["heater"]},
   "brokerResources": [{"method": "Connect"}, {"method": "Subscribe", "topics": ["telemetry/temperature", "telemetry/humidity"]}]}
]}`

// NewTutorialPKI builds the tutorial's PKI with validity periods around
// now. step's leaf profile gives client and server authentication; the same
// is done here.
func NewTutorialPKI(tb testing.TB, now time.Time) *TutorialPKI {
	tb.Helper()
	p := &TutorialPKI{}
	p.ContosoRoot = NewRootCAAt(tb, now, "Contoso Root CA")
	p.ContosoIntermediate = p.ContosoRoot.Intermediate(tb, "Contoso Intermediate CA 1")
	p.Server = p.ContosoIntermediate.Leaf(tb, "mqtts-endpoint",
		WithDNSNames("localhost"), WithExtKeyUsage(serverAndClient...))
	p.FabrikamRoot = NewRootCAAt(tb, now, "Fabrikam Root CA")
	p.FabrikamIntermediate = p.FabrikamRoot.Intermediate(tb, "Fabrikam Intermediate CA 1")
	p.Thermostat = p.FabrikamIntermediate.Leaf(tb, "thermostat", WithExtKeyUsage(serverAndClient...))
	p.Hygrometer = p.FabrikamIntermediate.Leaf(tb, "hygrometer", WithExtKeyUsage(serverAndClient...))
	p.Heater = p.FabrikamIntermediate.Leaf(tb, "heater", WithExtKeyUsage(serverAndClient...))
	p.Lightbulb = p.FabrikamIntermediate.Leaf(tb, "lightbulb", WithExtKeyUsage(serverAndClient...))
	return p
}
