package registry

import (
	"strconv"
	"testing"
	"time"
)

// TestWorkQueue: ids come out in the order they were queued, once each
// however often they were queued meanwhile, and never while a worker holds
// them.
func TestWorkQueue(t *testing.T) {
	q := newWorkQueue()
	for _, id := range []string{"a", "b", "a", "c"} {
		q.push(id)
	}
	pop := func(want string) {
		t.Helper()
		if id, ok := q.pop(); !ok || id != want {
			t.Fatalf("pop = %q %v, want %q", id, ok, want)
		}
	}
	pop("a")
	q.push("a") // again while a worker holds it
	pop("b")
	pop("c") // a is held: c first
	got := make(chan string)
	go func() {
		id, _ := q.pop()
		got <- id
	}()
	select {
	case id := <-got:
		t.Fatalf("pop = %q while a is held", id)
	case <-time.After(50 * time.Millisecond):
	}
	q.done("a")
	if id := <-got; id != "a" {
		t.Fatalf("pop = %q, want a", id)
	}
	q.close()
	if id, ok := q.pop(); ok {
		t.Fatalf("pop after close = %q", id)
	}
}

// BenchmarkWorkQueue60k: what a start with module configurations costs the
// queue: every module twin of 10,000 devices × 6 modules queued, then taken.
func BenchmarkWorkQueue60k(b *testing.B) {
	ids := make([]string, 60000)
	for i := range ids {
		ids[i] = "device-" + strconv.Itoa(i/6) + "/module-" + strconv.Itoa(i%6)
	}
	for b.Loop() {
		q := newWorkQueue()
		for _, id := range ids {
			q.push(id)
		}
		for range ids {
			id, _ := q.pop()
			q.done(id)
		}
	}
}
