package aioconfig_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/auth"
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

// The configuration from the Kubernetes API: in a pod, the service
// account's token and CA are used; outside, name the API server. The
// Broker follows every change of the namespace's resources until it is
// closed.
func ExampleNewCluster() {
	ctx := context.Background()
	k, err := aioconfig.NewCluster(ctx, aioconfig.ClusterConfig{
		Namespace: "mqttauth",
		// APIServer: "https://127.0.0.1:6443", CAFile: "ca.crt", TokenFile: "token",
	})
	if err != nil {
		fmt.Println(err) // not in a cluster: KUBERNETES_SERVICE_HOST is not set
		return
	}
	defer k.Close()
	b, err := k.Build(ctx, aioconfig.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()
	_ = b.CheckReady(ctx) // logs the Role rules that are missing, if any
	m, err := auth.NewManager(b.AuthConfig())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	for _, p := range b.Ports {
		fmt.Println("listen on", p.Address, "as", p.Name)
	}
}

// The permissions of the broker's identity in its namespace, as
// deploy/kubernetes/rbac.yaml grants them.
func ExampleClusterPermissions() {
	for _, p := range aioconfig.ClusterPermissions() {
		fmt.Println(p)
	}
	// Output:
	// list brokerlisteners.mqttbroker.iotoperations.azure.com
	// watch brokerlisteners.mqttbroker.iotoperations.azure.com
	// list brokerauthentications.mqttbroker.iotoperations.azure.com
	// watch brokerauthentications.mqttbroker.iotoperations.azure.com
	// list brokerauthorizations.mqttbroker.iotoperations.azure.com
	// watch brokerauthorizations.mqttbroker.iotoperations.azure.com
	// list configmaps
	// watch configmaps
	// list secrets
	// watch secrets
	// create events
}
