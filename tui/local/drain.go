package local

import (
	"time"
)

// drainMeter follows the outbox's depth to say how fast it drains once the
// hub is back: from the deepest point since the link came up (or since the
// depth last grew) to now. It only reads the times the daemon stamped on its
// events, so it says the same on any machine.
type drainMeter struct {
	peak     int       // the depth it drains from
	peakAt   time.Time // when draining from peak began
	last     int
	lastAt   time.Time
	drained  int           // the patches of the last drain that reached 0
	took     time.Duration // how long that took
	finished bool          // the last drain reached 0
}

// linkUp says the link came up at t: the depth then is where draining starts.
func (d *drainMeter) linkUp(t time.Time) {
	d.peak, d.peakAt = d.last, t
}

// add records the depth n at t.
func (d *drainMeter) add(n int, t time.Time) {
	switch {
	case n > d.last || d.peakAt.IsZero():
		d.peak, d.peakAt, d.finished = n, t, false
	case n == 0 && d.last > 0:
		d.drained, d.took, d.finished = d.peak, t.Sub(d.peakAt), true
	}
	d.last, d.lastAt = n, t
}

// rate is the patches a second drained since the peak; ok is false when the
// outbox has not drained since it last grew.
func (d *drainMeter) rate() (perSecond float64, ok bool) {
	gone := d.peak - d.last
	dt := d.lastAt.Sub(d.peakAt)
	if gone <= 0 || dt <= 0 {
		return 0, false
	}
	return float64(gone) / dt.Seconds(), true
}
