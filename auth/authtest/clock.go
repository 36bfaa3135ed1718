package authtest

import (
	"container/heap"
	"sync"
	"time"

	"github.com/mqttauth/mqttauth/auth"
)

// Clock is a fake [auth.Clock]. Time stands still until Advance or Set moves
// it; timers that fall due then run, in order of their due time, on the
// goroutine that moved the clock. Timers sit in a heap, so a test can hold
// hundreds of thousands of them. The zero Clock starts at the zero time; use
// NewClock for a realistic start.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	seq    uint64
	timers timerHeap
}

// NewClock returns a Clock that reads now.
func NewClock(now time.Time) *Clock { return &Clock{now: now} }

type timer struct {
	c     *Clock
	at    time.Time
	seq   uint64 // creation order: equal due times run in that order
	f     func()
	index int // in the heap; -1 once it ran or was stopped
}

type timerHeap []*timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *timerHeap) Push(x any) {
	t := x.(*timer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.index = -1
	return t
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
	c.seq++
	t := &timer{c: c, at: c.now.Add(d), seq: c.seq, f: f}
	heap.Push(&c.timers, t)
	return t
}

// Stop prevents the timer from running and reports whether it did.
func (t *timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.index < 0 {
		return false
	}
	heap.Remove(&t.c.timers, t.index)
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
		if len(c.timers) == 0 || c.timers[0].at.After(now) {
			if now.After(c.now) {
				c.now = now
			}
			c.mu.Unlock()
			return
		}
		next := heap.Pop(&c.timers).(*timer)
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
