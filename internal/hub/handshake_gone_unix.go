//go:build unix

package hub

import (
	"errors"
	"net"
	"syscall"
)

// clientGone reports whether the client of c closed or reset its end:
// a peek that does not wait. After its ClientHello a client sends nothing
// until the hub answers, so anything there to read is its end.
func clientGone(c net.Conn) bool {
	if cc, ok := c.(*countedConn); ok {
		c = cc.Conn
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	var b [1]byte
	rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = err == nil && n == 0 || err != nil && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR)
		return true // never wait
	})
	return gone
}
