package aioconfig_test

import (
	"errors"
	"fmt"

	"github.com/mqttauth/mqttauth/aioconfig"
)

// A seed 002 (v1beta1) BrokerAuthentication and the Azure portal's rules
// array, in one multi-document text.
func ExampleParse() {
	c, err := aioconfig.Parse([]byte(`
apiVersion: mqttbroker.iotoperations.azure.com/v1beta1
kind: BrokerAuthentication
metadata: {name: authn}
spec:
  authenticationMethods:
  - method: ServiceAccountToken
    serviceAccountToken: {audiences: [aio-mq]}
  - method: x509Credentials
    x509Credentials: {trustedClientCaCert: client-ca}
---
[{"principals": {"usernames": ["heater"]}, "brokerResources": [{"method": "Connect"}]}]
`), "broker.yaml", "")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range c.Authentications[0].Methods {
		fmt.Println(m.Method)
	}
	fmt.Println(c.Authorizations[0].Rules, "rule")
	// Output:
	// ServiceAccountToken
	// X509
	// 1 rule
}

// Errors name the document, the field and the fix.
func ExampleError() {
	_, err := aioconfig.Parse([]byte(`
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: authn}
spec:
  authenticationMethods:
  - method: ServiceAccountToken
    serviceAccountToken: {audiences: [aio-mq]}
`), "broker.yaml", "")
	fmt.Println(err)
	fmt.Println(errors.Is(err, aioconfig.ErrUnknownField))
	// Output:
	// aioconfig: broker.yaml: document 1 (line 1): BrokerAuthentication "authn": spec.authenticationMethods[0].serviceAccountToken: unknown field (serviceAccountToken is the v1beta1 spelling: write serviceAccountTokenSettings, or apiVersion mqttbroker.iotoperations.azure.com/v1beta1)
	// true
}
