//go:build !race

package x509auth_test

const raceEnabled = false
