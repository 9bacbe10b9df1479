package identity

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Key sizes, in decoded bytes, that IoT Hub accepts for symmetric keys.
const (
	MinKeyBytes = 16
	MaxKeyBytes = 64
	// NewKeyBytes is the size of the keys NewKey makes.
	NewKeyBytes = 32
)

// NewKey returns a new symmetric key: 32 random bytes from crypto/rand in
// standard, padded base64.
func NewKey() (string, error) {
	b := make([]byte, NewKeyBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("new key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// ValidateKey reports whether k is a usable symmetric key: standard base64
// that decodes to 16 to 64 bytes. The error never contains the key.
func ValidateKey(k string) error {
	_, err := decodeKey(k)
	return err
}

func decodeKey(k string) ([]byte, error) {
	if k == "" {
		return nil, errors.New("key is empty")
	}
	// The decoder skips '\r' and '\n', but a key must be one unbroken string.
	if i := strings.IndexAny(k, "\r\n"); i >= 0 {
		return nil, fmt.Errorf("key is not valid base64 (bad data at byte %d)", i)
	}
	b, err := base64.StdEncoding.DecodeString(k)
	if err != nil {
		var ce base64.CorruptInputError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("key is not valid base64 (bad data at byte %d)", int64(ce))
		}
		return nil, errors.New("key is not valid base64")
	}
	if len(b) < MinKeyBytes || len(b) > MaxKeyBytes {
		return nil, fmt.Errorf("key decodes to %d bytes, want %d to %d", len(b), MinKeyBytes, MaxKeyBytes)
	}
	return b, nil
}
