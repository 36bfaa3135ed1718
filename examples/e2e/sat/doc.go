// Package sat holds the end-to-end tests of K8S-SAT: the example broker
// binary against a real kube-apiserver (package satauth/kubetest), with
// mosquitto_pub and the satclient binary as clients. The package has no
// code besides its tests.
package sat
