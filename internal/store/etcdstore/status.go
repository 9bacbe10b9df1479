package etcdstore

import (
	"context"
	"time"

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
