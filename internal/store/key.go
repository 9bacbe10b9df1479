package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// MaxKeyLen is the longest key, in bytes, that a store accepts.
const MaxKeyLen = 1024

// idChars are the characters, besides ASCII letters and digits, that IoT Hub allows in device
// and module ids. Key segments may use exactly these.
const idChars = "-:.+%_#*?!(),=@$'"

func isIDChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte(idChars, c) >= 0
}

// checkKey reports why key is not a valid key, as an error wrapping ErrInvalid.
func checkKey(key string) error {
	if key == "" {
		return wrapf(ErrInvalid, "store: invalid key %q: empty", key)
	}
	if len(key) > MaxKeyLen {
		return wrapf(ErrInvalid, "store: invalid key %q: %d bytes, longer than %d", key[:64]+"…", len(key), MaxKeyLen)
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "":
			return wrapf(ErrInvalid, "store: invalid key %q: empty segment", key)
		case ".", "..":
			return wrapf(ErrInvalid, "store: invalid key %q: segment %q is not allowed", key, seg)
		}
		for i := 0; i < len(seg); i++ {
			if !isIDChar(seg[i]) {
				return wrapf(ErrInvalid, "store: invalid key %q: character %q is not allowed (segments use A-Za-z0-9 and %s)",
					key, rune(seg[i]), idChars)
			}
		}
	}
	return nil
}

const (
	hexDigits = "0123456789ABCDEF"
	// maxNameLen keeps file names within the 143 bytes that even eCryptfs allows.
	maxNameLen = 138
)

// fileName maps a valid key to the name of its record file. Bytes outside [a-z0-9._-] are
// percent-encoded with upper-case hex digits, '/' and '%' included. Upper-case letters are
// encoded too, so that two keys differing only in case get different files on
// case-insensitive file systems (macOS, Windows). Names that Windows reserves for devices
// get their first byte encoded; names too long for a file system get a hash in their tail.
// The key is stored inside the file, so the name never has to be decoded.
func fileName(key string) string {
	return string(appendFileName(make([]byte, 0, len(key)+16), key))
}

// appendFileName appends fileName(key) to b.
func appendFileName(b []byte, key string) []byte {
	start := len(b)
	for i := 0; i < len(key); i++ {
		c := key[i]
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-' {
			b = append(b, c)
		} else {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
		}
	}
	if reservedOnWindows(b[start:]) {
		c, rest := b[start], string(b[start+1:]) // a copy: the escape moves the bytes
		b = append(append(b[:start], '%', hexDigits[c>>4], hexDigits[c&15]), rest...)
	}
	if len(b)-start > maxNameLen {
		sum := sha256.Sum256([]byte(key))
		b = append(b[:start+100], '~')
		b = hex.AppendEncode(b, sum[:16])
	}
	return append(b, ".json"...)
}

// reservedOnWindows reports whether name, up to its first dot, is a DOS device name.
func reservedOnWindows(name []byte) bool {
	base := name
	if i := bytes.IndexByte(name, '.'); i >= 0 {
		base = name[:i]
	}
	switch string(base) {
	case "con", "prn", "aux", "nul":
		return true
	}
	return len(base) == 4 && (string(base[:3]) == "com" || string(base[:3]) == "lpt") &&
		'0' <= base[3] && base[3] <= '9'
}
