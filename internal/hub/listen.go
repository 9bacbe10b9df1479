package hub

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
)

// The hub's addresses: HTTPS on 443, as IoT Hub.
const (
	// DefaultListen is where the hub serves HTTPS by default. Microsoft's
	// Azure IoT SDKs connect to port 443 of the connection string's HostName
	// and to no other: they take no port in HostName.
	DefaultListen = ":443"
	// FallbackListen is where `outpost hub serve` serves when DefaultListen
	// cannot be bound (not root, or the port is taken).
	FallbackListen = ":8443"
)

// ListenFallback says that the hub could not listen where it was asked to
// and listens on Config.FallbackListen instead.
type ListenFallback struct {
	Wanted string // the address that could not be bound
	Got    string // the address the hub listens on instead
	Err    error  // why Wanted could not be bound
}

// Message is what to tell the operator: why, what it breaks, and the ways
// to serve on Wanted.
func (f *ListenFallback) Message() string {
	var b strings.Builder
	fmt.Fprintf(&b, "warning: cannot listen on %s (%s): listening on %s instead.\n", f.Wanted, bindReason(f.Err), f.Got)
	b.WriteString("Microsoft's Azure IoT SDKs connect to port 443 only (they take no port in HostName), so they cannot\n" +
		"reach this hub; outpost's own tools can (its connection strings carry the port).\n")
	fmt.Fprintf(&b, "To serve on %s:\n%s", f.Wanted, BindAdvice(f.Wanted, "--listen", f.Err))
	return b.String()
}

// bindReason says in words why binding failed.
func bindReason(err error) string {
	switch {
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return "permission denied: a port below 1024 needs root or the capability CAP_NET_BIND_SERVICE"
	case errors.Is(err, syscall.EADDRINUSE):
		return "address already in use: another program listens there"
	}
	return err.Error()
}

// BindAdvice lists, one per line, what the operator can do when addr could
// not be bound for err; flag is the flag that sets the address.
func BindAdvice(addr, flag string, err error) string {
	port := addr
	if _, p, perr := net.SplitHostPort(addr); perr == nil {
		port = p
	}
	switch {
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return `  - let outpost bind low ports, once: sudo setcap cap_net_bind_service=+ep "$(command -v outpost)"` + "\n" +
			"  - or run it as root\n" +
			"  - or choose another address explicitly: " + flag + " ADDR\n"
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Sprintf("  - stop the program that holds it (ss -ltnp 'sport = %s' names it)\n", port) +
			"  - or choose another address explicitly: " + flag + " ADDR\n"
	}
	return "  - choose another address explicitly: " + flag + " ADDR\n"
}

// ListenError is a listen that failed, with what to do about it.
type ListenError struct {
	What string // "hub", "AMQP refusal"
	Flag string // the flag that sets Addr
	Addr string
	Err  error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("%s: listen on %s: %s", e.What, e.Addr, bindReason(e.Err))
}

func (e *ListenError) Unwrap() error { return e.Err }

// Hint is what to do next.
func (e *ListenError) Hint() string {
	return "To listen there:\n" + strings.TrimRight(BindAdvice(e.Addr, e.Flag, e.Err), "\n")
}

// listen listens on addr; when that fails and fallback is set, on fallback,
// saying why in the returned *ListenFallback.
func listen(what, flag, addr, fallback string) (net.Listener, *ListenFallback, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil, nil
	}
	if fallback == "" {
		return nil, nil, &ListenError{What: what, Flag: flag, Addr: addr, Err: err}
	}
	ln, ferr := net.Listen("tcp", fallback)
	if ferr != nil {
		return nil, nil, fmt.Errorf("%w; and the fallback: %w", &ListenError{What: what, Flag: flag, Addr: addr, Err: err}, &ListenError{What: what, Flag: flag, Addr: fallback, Err: ferr})
	}
	got := fallback
	if strings.HasSuffix(fallback, ":0") {
		got = ln.Addr().String()
	}
	return ln, &ListenFallback{Wanted: addr, Got: got, Err: err}, nil
}
