package config

// Tutorial is the configuration of the Azure IoT Operations tutorial "TLS,
// X.509 client authentication, and ABAC authorization": X.509 clients of
// the Fabrikam CA with attributes from their certificate chain, and the
// tutorial's abac-authz rules. To these it adds SCRAM-SHA-256/512 for
// clients without a certificate, with a sample user allowed under
// sandbox/#. Paths are relative to the file, which the example broker
// writes next to its development PKI and the sample user's file.
const Tutorial = `# The Azure IoT Operations TLS, X.509 and ABAC tutorial, reproduced.
listener:
  address: "127.0.0.1:8883"
  serverCert: mqtts-endpoint.crt   # Contoso server certificate bundled with its intermediate
  serverKey: mqtts-endpoint.key

authentication:
  authenticationMethods:
    - method: X509
      x509Settings:
        trustedClientCaCert: fabrikam_root_ca.crt
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
    # without a certificate (the listener then requests, not requires, one).
    - method: SCRAM
      scramSettings:
        usersFile: scram-users.json

authorization:
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

// SampleSCRAMUser is the user name of the SCRAM sample user, whose random
// password the example broker writes to SampleSCRAMPasswordFile.
const (
	SampleSCRAMUser         = "sample"
	SampleSCRAMUsersFile    = "scram-users.json"
	SampleSCRAMPasswordFile = "scram-sample.password"
)
