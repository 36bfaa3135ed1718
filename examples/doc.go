// Package examples holds runnable programs built on mqttauth: the example
// broker (broker), the example NATS server with its MQTT listener (nats),
// a custom authentication server (authserver), a K8S-SAT
// client that re-authenticates when its token rotates (satclient) and a
// SCRAM user tool (scramuser). Each is a main package in its own directory.
package examples
