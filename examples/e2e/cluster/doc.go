// Package cluster holds the end-to-end tests of the Kubernetes source
// (-config-from-cluster) and of the deployment under deploy/: the example
// broker process configured from a real kube-apiserver, and the manifests
// applied to it with a server-side dry run.
package cluster
