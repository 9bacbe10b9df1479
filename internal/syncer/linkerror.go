package syncer

import "time"

// linkError is the last reason the hub was unreachable.
type linkError struct {
	msg string
	at  time.Time // when msg was first seen
}

// noteErrorLocked records err, the reason a sync or an upload failed, and
// reports whether the reason changed (a reason seen again on each retry is
// no change). The caller holds s.mu.
func (s *Syncer) noteErrorLocked(ok bool, err error) bool {
	if ok || err == nil || err.Error() == s.lastErr.msg {
		return false
	}
	s.lastErr = linkError{msg: err.Error(), at: s.now().UTC()}
	return true
}
