//go:build unix

package mochi_test

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time (user + system) this process has used. On a
// shared machine it measures work where wall time measures the neighbours.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
