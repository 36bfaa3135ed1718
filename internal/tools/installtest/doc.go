// Command installtest checks that the modules of this repository can be
// installed with `go get` by a user outside it, as they will be once the
// release tags exist.
//
// It builds a module proxy on disk from the tree the release tags would
// name (HEAD by default): for every released module
// (github.com/mqttauth/mqttauth, adapters/mochi, metrics/prometheus,
// examples) a zip made with golang.org/x/mod/zip, the .mod and .info files
// and a list, at one version (-version, v0.1.0 by default). Then, in a
// fresh temporary directory outside the repository, with GOWORK=off, a
// fresh module cache and
//
//	GOPROXY=file://PROXY,file://$(go env GOMODCACHE)/cache/download,$(go env GOPROXY)
//	GONOSUMDB=github.com/mqttauth/mqttauth
//
// (the project's modules come from the proxy on disk, which no checksum
// database knows yet; third-party modules from the local module cache or
// the machine's configured proxy), it creates a module that `go get`s the
// root module, the mochi adapter and the exporter at that version, builds
// a program (testdata/consumer) that starts a mochi broker with X.509
// client certificates and an abac policy and the exporter, connects one
// client and requires CONNACK 0x00, and installs the example broker with
// `go install github.com/mqttauth/mqttauth/examples/broker@VERSION`.
//
// Usage, from anywhere in the repository:
//
//	go run ./internal/tools/installtest             # HEAD at v0.1.0
//	go run ./internal/tools/installtest -worktree   # the work tree, uncommitted changes included
//	go run ./internal/tools/installtest -proxy-only DIR   # write the proxy to DIR and stop
//	go run ./internal/tools/installtest -list       # the released modules' directories, in tag order
//
// scripts/release uses -proxy-only to fill the nested modules' go.sum with
// the checksums of the versions it is about to tag; .ci/run runs the whole
// test.
package main
