package aioconfig_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

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

// A running Broker takes a new version of its configuration in place:
// the ports in force change, the program is told (Notify) and opens the
// new port; the sessions of the untouched port are left alone.
func ExampleBroker_Apply() {
	ctx := context.Background()
	parse := func(ports string) *aioconfig.Config {
		c, err := aioconfig.Parse(fmt.Appendf(nil, `
kind: BrokerListener
metadata: {name: l}
spec: {ports: [%s]}
---
kind: BrokerAuthentication
metadata: {name: jwt}
spec: {authenticationMethods: [{method: JWT, jwtSettings: {issuer: 'https://issuer.example/', audiences: [mqtt]}}]}
`, ports), "broker.yaml", "")
		if err != nil {
			panic(err)
		}
		return c
	}
	b, err := aioconfig.Build(ctx, parse(`{port: 1883, authenticationRef: jwt}`), aioconfig.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()
	m, err := auth.NewManager(b.AuthConfig()) // its configuration watch re-checks sessions after Apply
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	stop := b.Notify(func() { fmt.Println("ports changed: open and close listeners") })
	defer stop()

	ch, err := b.Apply(ctx, parse(`{port: 1883, authenticationRef: jwt}, {port: 8883, authenticationRef: jwt}`))
	if err != nil {
		fmt.Println(err) // the last good configuration stays
		return
	}
	fmt.Println("added", ch.Added, "removed", ch.Removed)
	for _, p := range b.CurrentPorts() {
		fmt.Println(p.Name, p.Address)
	}
	// Output:
	// ports changed: open and close listeners
	// added [l:8883] removed []
	// l:1883 :1883
	// l:8883 :8883
}

// The configuration files followed: each change goes through Apply.
func ExampleWatchFiles() {
	c, err := aioconfig.Load("broker.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	b, err := aioconfig.Build(context.Background(), c, aioconfig.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()
	fw, err := aioconfig.WatchFiles(b, []string{"broker.yaml"}, aioconfig.FilesConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer fw.Close() // before the Broker's Close
}
