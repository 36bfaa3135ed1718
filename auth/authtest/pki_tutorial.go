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
