// Package mochi is the adapter for mochi-mqtt (github.com/mochi-mqtt/server/v2);
// the hook arrives in a later change. For now it holds benchmarks that compare
// the abac authorizer with mochi's own auth ledger.
package mochi
