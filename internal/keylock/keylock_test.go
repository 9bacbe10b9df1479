package keylock

import (
	"fmt"
	"sync"
	"testing"
)

// TestLocks: one holder per key at a time, keys apart, and
// nothing kept once no one holds or waits.
func TestLocks(t *testing.T) {
	var l Locks
	held := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			for j := range 200 {
				id := fmt.Sprintf("d%d", (i+j)%5)
				unlock := l.Lock(id)
				mu.Lock()
				held[id]++
				n := held[id]
				mu.Unlock()
				if n != 1 {
					t.Errorf("%s held by %d at once", id, n)
				}
				mu.Lock()
				held[id]--
				mu.Unlock()
				unlock()
			}
		})
	}
	wg.Wait()
	if len(l.m) != 0 {
		t.Fatalf("%d locks kept after every unlock", len(l.m))
	}
}
