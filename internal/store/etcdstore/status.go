package etcdstore

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// MemberStatus is what one etcd endpoint says of itself.
type MemberStatus struct {
	Endpoint string `json:"endpoint"`
	Healthy  bool   `json:"healthy"`
	Leader   bool   `json:"leader,omitempty"`
	Revision int64  `json:"revision,omitempty"`
	DBSize   int64  `json:"dbSize,omitempty"`
	Version  string `json:"version,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Status asks each endpoint for its status, within timeout each.
func (s *Store) Status(ctx context.Context, timeout time.Duration) []MemberStatus {
	out := make([]MemberStatus, len(s.eps))
	done := make(chan struct{}, len(s.eps))
	for i, ep := range s.eps {
		go func() {
			defer func() { done <- struct{}{} }()
			c, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			m := MemberStatus{Endpoint: ep}
			st, err := s.cli.Status(c, ep)
			if err != nil {
				m.Error = err.Error()
			} else {
				m.Healthy = len(st.Errors) == 0 && st.Leader != 0
				m.Leader = st.Leader == st.Header.MemberId
				m.Revision, m.DBSize, m.Version = st.Header.Revision, st.DbSize, st.Version
				if len(st.Errors) > 0 {
					m.Error = st.Errors[0]
				}
			}
			out[i] = m
		}()
	}
	for range s.eps {
		<-done
	}
	return out
}

// Revision is etcd's current revision, read through a quorum.
func (s *Store) Revision() (int64, error) {
	ctx, cancel, err := s.op()
	if err != nil {
		return 0, err
	}
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+"\x00", clientv3.WithKeysOnly())
	if err != nil {
		return 0, s.fail("read the revision", err)
	}
	return resp.Header.Revision, nil
}

// Compacted reports whether etcd compacted its history past revision rev: a
// reader that last saw rev can no longer be sent the changes since, and must
// read everything again.
func (s *Store) Compacted(rev int64) (bool, error) {
	ctx, cancel, err := s.op()
	if err != nil {
		return false, err
	}
	defer cancel()
	_, err = s.cli.Get(ctx, s.prefix+"\x00", clientv3.WithKeysOnly(), clientv3.WithRev(rev))
	if errors.Is(err, rpctypes.ErrCompacted) {
		return true, nil
	}
	if errors.Is(err, rpctypes.ErrFutureRev) {
		return false, nil // ahead of etcd: the caller's own check catches that
	}
	if err != nil {
		return false, s.fail("check compaction", err)
	}
	return false, nil
}
