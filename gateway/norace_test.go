//go:build !race

package gateway_test

// raceEnabled is set when the tests run with the race detector, which
// inflates goroutine stacks and heap objects.
const raceEnabled = false
