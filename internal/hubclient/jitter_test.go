package hubclient_test

import (
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hubclient"
)

// TestJitterSpreads: retries after a back-off of 1 s are spread over the
// whole second (from a tenth of it), not bunched after it: of 2,000 clients
// cut at once, some come back in the first quarter of the second and some
// in the last, none later than the back-off nor sooner than its tenth.
func TestJitterSpreads(t *testing.T) {
	const backoff = time.Second
	lo, hi := backoff, time.Duration(0)
	for range 2000 {
		d := hubclient.Jitter(backoff)
		if d < backoff/10 || d > backoff {
			t.Fatalf("Jitter(%s) = %s, want within [%s, %s]", backoff, d, backoff/10, backoff)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo > backoff/4 || hi < 3*backoff/4 {
		t.Errorf("2,000 retries after %s came back between %s and %s: not spread over the back-off", backoff, lo, hi)
	}
	if d := hubclient.Jitter(0); d != 0 {
		t.Errorf("Jitter(0) = %s, want 0", d)
	}
}
