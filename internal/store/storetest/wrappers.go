package storetest

import (
	"sync/atomic"

	"github.com/outpost-edge/outpost/internal/store"
)

// Race is a store that runs a function once, just before the first write (a
// Put or Delete, or a Txn op that is not a check) of the key it is armed
// with: a test's way to delete, say, a device after a writer read it and
// before its write commits.
type Race struct {
	store.Store
	key   string
	armed atomic.Bool
	race  func()
}

// Arm makes the next write of key run race first (once). race may use the
// store: its own writes do not run it again.
func (s *Race) Arm(key string, race func()) {
	s.key, s.race = key, race
	s.armed.Store(true)
}

func (s *Race) hit(key string) {
	if key == s.key && s.armed.CompareAndSwap(true, false) {
		s.race()
	}
}

func (s *Race) Put(key string, value []byte, expect int64) (int64, error) {
	s.hit(key)
	return s.Store.Put(key, value, expect)
}

func (s *Race) Delete(key string, expect int64) error {
	s.hit(key)
	return s.Store.Delete(key, expect)
}

func (s *Race) Txn(ops ...store.Op) (int64, error) {
	for _, op := range ops {
		if !op.Check {
			s.hit(op.Key)
		}
	}
	return s.Store.Txn(ops...)
}

// Limited is a store that takes at most N ops in one Txn, as etcd takes
// --max-txn-ops (store.TxnLimiter): a Txn of more fails, as it would there.
type Limited struct {
	store.Store
	N int
}

// TxnLimit returns N.
func (s *Limited) TxnLimit() int { return s.N }

func (s *Limited) Txn(ops ...store.Op) (int64, error) {
	if len(ops) > s.N {
		return 0, store.Invalidf("store: txn: %d ops, over the limit of %d", len(ops), s.N)
	}
	return s.Store.Txn(ops...)
}
