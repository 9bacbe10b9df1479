package store

import (
	"encoding/json"
	"errors"
	"slices"
)

// The checks every backend makes before a write, so that all of them refuse the same
// keys and values with the same errors.

// CheckKey reports why key is not a valid key, as an error wrapping ErrInvalid.
func CheckKey(key string) error { return checkKey(key) }

// CheckPut reports why Put(key, value, expect) is invalid, wrapping ErrInvalid.
func CheckPut(key string, value []byte, expect int64) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if expect < Any {
		return wrapf(ErrInvalid, "store: put %s: bad expected version %d", key, expect)
	}
	if !json.Valid(value) {
		return wrapf(ErrInvalid, "store: put %s: value is not valid JSON", key)
	}
	return nil
}

// CheckDelete reports why Delete(key, expect) is invalid, wrapping ErrInvalid.
func CheckDelete(key string, expect int64) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if expect < Any {
		return wrapf(ErrInvalid, "store: delete %s: bad expected version %d", key, expect)
	}
	return nil
}

// CheckOps reports why Txn(ops...) is invalid, wrapping ErrInvalid, and returns the
// ops' keys sorted.
func CheckOps(ops []Op) ([]string, error) {
	keys := make([]string, 0, len(ops))
	for _, op := range ops {
		if err := checkKey(op.Key); err != nil {
			return nil, err
		}
		if op.Expect < Any {
			return nil, wrapf(ErrInvalid, "store: txn: %s: bad expected version %d", op.Key, op.Expect)
		}
		if op.Check && (op.Delete || op.Value != nil || op.Expect == Any) {
			return nil, wrapf(ErrInvalid, "store: txn: check of %s: a check has a version to expect and nothing to write", op.Key)
		}
		if !op.Delete && !op.Check && !json.Valid(op.Value) {
			return nil, wrapf(ErrInvalid, "store: txn: put %s: value is not valid JSON", op.Key)
		}
		keys = append(keys, op.Key)
	}
	slices.Sort(keys)
	for i := 1; i < len(keys); i++ {
		if keys[i] == keys[i-1] {
			return nil, wrapf(ErrInvalid, "store: txn: key %s appears twice", keys[i])
		}
	}
	return keys, nil
}

// Invalidf returns an error with the message format makes that wraps ErrInvalid.
func Invalidf(format string, args ...any) error { return wrapf(ErrInvalid, format, args...) }

// CheckExpect returns the *ConflictError of a write to key expecting version expect,
// when the record's version is current (exists false: there is no record); nil if the
// write may go ahead.
func CheckExpect(key string, expect, current int64, exists bool) error {
	return checkExpect(key, expect, current, exists)
}

// ErrUnavailable is a store that cannot answer now (etcd without a quorum): nothing is
// known to be written, and the same request may succeed later.
var ErrUnavailable = errors.New("store unavailable")
