package imagestore

import (
	"net/http"
	"sync"
)

// pullCount counts the pulls running and closes the registry connections they left
// idle when the last one ends. A device pulls rarely (a new deployment, a new tag), so
// keeping them open for the next pull saves little, while each costs the daemon two
// goroutines and their buffers for the transport's idle timeout (90 s): ten modules
// pulled at once left ten.
type pullCount struct {
	base *http.Transport

	mu sync.Mutex
	n  int
}

// start counts a pull; the function it returns ends it.
func (c *pullCount) start() (end func()) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.n--; c.n == 0 && c.base != nil {
			c.base.CloseIdleConnections()
		}
	}
}
