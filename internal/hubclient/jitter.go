package hubclient

import (
	"math/rand/v2"
	"time"
)

// Jitter is how long to wait before retrying a hub that failed, given the
// current back-off: a duration drawn evenly from [backoff/10, backoff]
// ("full jitter", with a floor). When a hub restarts, or a replica dies
// and its devices move to the others, thousands of clients lose their
// connection at the same moment; a retry after backoff plus a little (the
// device's sync used to wait 1 s plus up to 0.25 s) brings them all back
// within that little, a storm of TLS handshakes at once. Spread over the
// whole back-off they come back at a rate the hub can take, and keep
// spreading as the back-off grows.
func Jitter(backoff time.Duration) time.Duration {
	if backoff <= 0 {
		return 0
	}
	floor := backoff / 10
	return floor + rand.N(backoff-floor+1)
}
