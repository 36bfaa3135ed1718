package authtest

import (
	"slices"
	"sync"
	"time"

	"github.com/mqttauth/mqttauth/auth"
)

// Clock is a fake [auth.Clock]. Time stands still until Advance or Set moves
// it; timers that fall due then run, in order of their due time, on the
// goroutine that moved the clock. The zero Clock starts at the zero time; use
// NewClock for a realistic start.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
}

// NewClock returns a Clock that reads now.
func NewClock(now time.Time) *Clock { return &Clock{now: now} }

type timer struct {
	c   *Clock
	at  time.Time
	f   func()
	off bool
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc arranges for f to run when the clock has advanced by d.
func (c *Clock) AfterFunc(d time.Duration, f func()) auth.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

// Stop prevents the timer from running and reports whether it did.
func (t *timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.off {
		return false
	}
	t.off = true
	t.c.timers = slices.DeleteFunc(t.c.timers, func(u *timer) bool { return u == t })
	return true
}

// Advance moves the clock forward by d and runs the timers that fall due.
func (c *Clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves the clock to now (never backwards) and runs the timers that
// fall due, each with the clock reading its due time, then leaves the clock
// at now.
func (c *Clock) Set(now time.Time) {
	for {
		c.mu.Lock()
		var next *timer
		for _, t := range c.timers {
			if !t.at.After(now) && (next == nil || t.at.Before(next.at)) {
				next = t
			}
		}
		if next == nil {
			if now.After(c.now) {
				c.now = now
			}
			c.mu.Unlock()
			return
		}
		next.off = true
		c.timers = slices.DeleteFunc(c.timers, func(u *timer) bool { return u == next })
		if next.at.After(c.now) {
			c.now = next.at
		}
		c.mu.Unlock()
		next.f()
	}
}

// Pending returns the number of timers that have not run or been stopped.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}
