package authtest_test

import (
	"testing"
	"time"

	"github.com/mqttauth/mqttauth/auth/authtest"
)

func TestClock(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := authtest.NewClock(t0)
	var got []string
	at := map[string]time.Time{}
	add := func(name string, d time.Duration) {
		c.AfterFunc(d, func() { got = append(got, name); at[name] = c.Now() })
	}
	add("b", 2*time.Second)
	add("a", time.Second)
	add("b2", 2*time.Second) // same due time as b: runs after it
	stopped := c.AfterFunc(1500*time.Millisecond, func() { t.Error("a stopped timer ran") })
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop reports true once")
	}
	add("late", time.Hour)
	c.Advance(2 * time.Second)
	if want := []string{"a", "b", "b2"}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("ran %v, want %v", got, want)
	}
	if !at["a"].Equal(t0.Add(time.Second)) {
		t.Fatalf("a ran at %v: a timer sees its due time", at["a"])
	}
	if !c.Now().Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("now = %v", c.Now())
	}
	if c.Pending() != 1 {
		t.Fatalf("pending %d", c.Pending())
	}
	c.Set(t0) // never backwards
	if !c.Now().Equal(t0.Add(2 * time.Second)) {
		t.Fatal("the clock went backwards")
	}
}

// A timer that schedules another within the advanced span sees it run.
func TestClockChained(t *testing.T) {
	c := authtest.NewClock(time.Unix(0, 0))
	n := 0
	var tick func()
	tick = func() {
		n++
		c.AfterFunc(time.Second, tick)
	}
	c.AfterFunc(time.Second, tick)
	c.Advance(10 * time.Second)
	if n != 10 {
		t.Fatalf("ticked %d times, want 10", n)
	}
}

func BenchmarkClockStop(b *testing.B) {
	c := authtest.NewClock(time.Unix(0, 0))
	for i := range 100_000 {
		c.AfterFunc(time.Duration(i)*time.Millisecond, func() {})
	}
	b.ReportAllocs()
	for b.Loop() {
		c.AfterFunc(time.Hour, func() {}).Stop()
	}
}
