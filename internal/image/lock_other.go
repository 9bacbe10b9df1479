//go:build !unix

package image

// lock serialises index.json updates within this process; other systems
// get no lock between processes yet.
func (c *Cache) lock() (unlock func(), err error) {
	processLock.Lock()
	return processLock.Unlock, nil
}
