package identity

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestNewKey(t *testing.T) {
	seen := make(map[string]bool)
	for range 10 {
		k, err := NewKey()
		if err != nil {
			t.Fatal(err)
		}
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil || len(b) != 32 {
			t.Fatalf("NewKey() = %q: %d bytes, %v", k, len(b), err)
		}
		if err := ValidateKey(k); err != nil {
			t.Fatalf("ValidateKey(NewKey()) = %v", err)
		}
		if seen[k] {
			t.Fatalf("NewKey returned %q twice", k)
		}
		seen[k] = true
	}
}

func TestValidateKey(t *testing.T) {
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	for _, k := range []string{b64(16), b64(32), b64(64)} {
		if err := ValidateKey(k); err != nil {
			t.Errorf("ValidateKey(%d bytes) = %v", len(k), err)
		}
	}
	bad := map[string]string{
		"":                              "key is empty",
		b64(15):                         "key decodes to 15 bytes, want 16 to 64",
		b64(65):                         "key decodes to 65 bytes",
		"c2VjcmV0LXNlY3JldC1zZWNyZXQ":   "not valid base64",
		"c2VjcmV0!XNlY3JldC1zZWNyZXQ=":  "not valid base64 (bad data at byte 8)",
		strings.TrimRight(b64(32), "="): "not valid base64",
		"AAAAAAAAAAAAAAAA\nAAAAAAAAAAAAAAAAAAAAAAAAAAA=": "not valid base64 (bad data at byte 16)",
		base64.URLEncoding.EncodeToString([]byte{0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe}): "not valid base64",
	}
	for k, want := range bad {
		err := ValidateKey(k)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateKey(%q) = %v, want error containing %q", k, err, want)
			continue
		}
		if k != "" && strings.Contains(err.Error(), k) {
			t.Errorf("error %q contains the key", err)
		}
	}
}
