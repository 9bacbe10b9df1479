package hubapi

import "io"

// ReadBody reads a request's or an answer's body whose announced length is
// n (its Content-Length, -1 when unknown): up to limit, into one buffer of
// that size rather than io.ReadAll's growing series. A body longer or
// shorter than announced is still read whole.
func ReadBody(r io.Reader, n, limit int64) ([]byte, error) {
	if n <= 0 || n > limit {
		return io.ReadAll(r)
	}
	b := make([]byte, 0, n+1) // +1: the read that sees EOF needs room
	for {
		m, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // longer than announced: grow as io.ReadAll does
		}
	}
}
