// Package tutorial holds the example broker's default configuration: the
// Azure IoT Operations tutorial "TLS, X.509 client authentication, and ABAC
// authorization" as BrokerListener, BrokerAuthentication and
// BrokerAuthorization resources (package aioconfig reads them), plus a
// SCRAM sample user for clients without a certificate.
package tutorial

// Config is the tutorial's configuration. ConfigMap and Secret names
// resolve as a pod sees them mounted, a directory per name and a file per
// key, under the directory of the file: the example broker writes
// fabrikam-ca/client_ca.pem and broker-server-cert/tls.crt, tls.key there
// from its development PKI.
const Config = `# The Azure IoT Operations TLS, X.509 and ABAC tutorial, reproduced.
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata:
  name: mqtts-endpoint
spec:
  serviceType: LoadBalancer
  ports:
    - port: 8883
      address: 127.0.0.1            # ours: the host to bind
      authenticationRef: x509-auth
      authorizationRef: abac-authz
      protocol: Mqtt
      tls:
        mode: Manual
        manual:
          secretRef: broker-server-cert   # kubernetes.io/tls Secret: tls.crt (chain), tls.key
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata:
  name: x509-auth
spec:
  authenticationMethods:
    - method: X509
      x509Settings:
        trustedClientCaCert: fabrikam-ca   # ConfigMap, key client_ca.pem
        authorizationAttributes:
          thermostat:
            subject: "CN = thermostat"
            attributes:
              group: thermostat_group
          hygrometer:
            subject: "CN = hygrometer"
            attributes:
              group: hygrometer_group
          intermediate:
            subject: "CN = Fabrikam Intermediate CA 1"
            attributes:
              manufacturer: fabrikam
    # Not in the tutorial: multi-step enhanced authentication for clients
    # without a certificate (the port then requests, not requires, one).
    - method: SCRAM
      scramSettings:
        usersFile: scram-users.json
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthorization
metadata:
  name: abac-authz
spec:
  authorizationPolicies:
    cache: Enabled
    rules:
      - principals:
          attributes:
            - group: thermostat_group
        brokerResources:
          - method: Connect
          - method: Publish
            topics: ["telemetry/temperature"]
      - principals:
          attributes:
            - group: hygrometer_group
        brokerResources:
          - method: Connect
          - method: Publish
            topics: ["telemetry/humidity"]
      - principals:
          attributes:
            - manufacturer: fabrikam
        brokerResources:
          - method: Connect
          - method: Publish
            topics: ["health/heartbeat"]
      - principals:
          usernames: ["heater"]
        brokerResources:
          - method: Connect
          - method: Subscribe
            topics: ["telemetry/temperature", "telemetry/humidity"]
      # Not in the tutorial: the SCRAM sample user.
      - principals:
          usernames: ["sample"]
        brokerResources:
          - method: Connect
          - method: Publish
            topics: ["sandbox/#"]
          - method: Subscribe
            topics: ["sandbox/#"]
`
