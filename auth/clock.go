package auth

import "time"

// Clock is the time source of sessions. Tests use a fake one
// (authtest.Clock) so that expiries happen without sleeping.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has elapsed, unless the
	// Timer is stopped first, as time.AfterFunc does.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a timer made by a [Clock].
type Timer interface {
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
}

// systemClock is the real clock.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// SystemClock is the Clock of the time package.
var SystemClock Clock = systemClock{}
