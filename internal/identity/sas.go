package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ClockSkew is how far past its expiry a token is still accepted. IoT Hub
// allows the same.
const ClockSkew = 5 * time.Minute

// sasPrefix is the scheme word that starts a token.
const sasPrefix = "SharedAccessSignature"

// maxExpiry is the last second of year 9999. Larger se values are rejected
// so that expiry arithmetic can't overflow.
const maxExpiry = 253402300799

// Errors returned by ParseSAS and SAS.Verify. They come wrapped with detail,
// so test for them with errors.Is.
var (
	ErrMalformed     = errors.New("malformed sas token")
	ErrExpired       = errors.New("sas token expired")
	ErrBadSignature  = errors.New("sas token signature does not match")
	ErrWrongResource = errors.New("sas token is not for this resource")
)

// SAS is a parsed shared access signature token.
type SAS struct {
	Resource  string    // sr, url-decoded
	Signature string    // sig, url-decoded: base64 of the HMAC
	Expiry    time.Time // se
	KeyName   string    // skn, the policy name; "" for device and module tokens

	// sr is the resource exactly as it appeared in the parsed token, and
	// srFor is the Resource it decoded to. The signature covers sr byte
	// for byte, and senders encode it in different ways (see the package
	// doc), so sr is what gets verified and re-serialised while Resource
	// still equals srFor.
	sr, srFor string
}

// NewSAS returns a token that grants access to resource until expiry,
// signed with key (base64). Set keyName (skn) when key belongs to a shared
// access policy, and leave it "" for a device or module key. Expiry is
// truncated to whole seconds. The resource is url-encoded as the package
// doc describes.
func NewSAS(resource, key string, expiry time.Time, keyName string) (string, error) {
	if resource == "" {
		return "", errors.New("new sas token: resource is empty")
	}
	k, err := decodeKey(key)
	if err != nil {
		return "", fmt.Errorf("new sas token: %w", err)
	}
	se := expiry.Unix()
	if se < 0 || se > maxExpiry {
		return "", fmt.Errorf("new sas token: expiry %s is outside 1970 to 9999", expiry.UTC().Format(time.RFC3339))
	}
	s := &SAS{Resource: resource, Expiry: time.Unix(se, 0).UTC(), KeyName: keyName}
	s.Signature = sign(k, s.stringToSign())
	return s.String(), nil
}

// ParseSAS parses a token, with or without the leading
// "SharedAccessSignature ". It accepts the fields in any order and matches
// their names without regard to case. It ignores unknown fields and empty
// ones (as in "&&"), as IoT Hub does. sr, sig and se are required, and se
// must be whole unix seconds without a sign or leading zeros. Errors wrap
// ErrMalformed and name the bad field. They never contain the signature.
func ParseSAS(token string) (*SAS, error) {
	t := strings.TrimSpace(token)
	if rest, ok := strings.CutPrefix(t, sasPrefix); ok && (rest == "" || isSpace(rest[0])) {
		t = strings.TrimSpace(rest)
	}
	if t == "" {
		return nil, fmt.Errorf("%w: no fields", ErrMalformed)
	}
	if strings.ContainsAny(t, " \t\r\n\v\f") {
		return nil, fmt.Errorf("%w: unexpected whitespace inside the token", ErrMalformed)
	}

	var sr, sig, se, skn *string
	for i, part := range strings.Split(t, "&") {
		if part == "" {
			continue
		}
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%w: field %d is not name=value", ErrMalformed, i+1)
		}
		var dst **string
		name = asciiToLower(name)
		switch name {
		case "sr":
			dst = &sr
		case "sig":
			dst = &sig
		case "se":
			dst = &se
		case "skn":
			dst = &skn
		default:
			continue
		}
		if *dst != nil {
			return nil, fmt.Errorf("%w: %s appears twice", ErrMalformed, name)
		}
		*dst = &value
	}
	switch {
	case sr == nil:
		return nil, fmt.Errorf("%w: missing sr", ErrMalformed)
	case sig == nil:
		return nil, fmt.Errorf("%w: missing sig", ErrMalformed)
	case se == nil:
		return nil, fmt.Errorf("%w: missing se", ErrMalformed)
	}

	s := &SAS{sr: *sr}
	var err error
	if *sr == "" {
		return nil, fmt.Errorf("%w: sr is empty", ErrMalformed)
	}
	if s.Resource, err = url.QueryUnescape(*sr); err != nil {
		return nil, fmt.Errorf("%w: sr is not valid url-encoding", ErrMalformed)
	}
	s.srFor = s.Resource
	if s.Signature, err = url.QueryUnescape(*sig); err != nil {
		return nil, fmt.Errorf("%w: sig is not valid url-encoding", ErrMalformed)
	}
	if s.Signature == "" {
		return nil, fmt.Errorf("%w: sig is empty", ErrMalformed)
	}
	if s.Expiry, err = parseExpiry(*se); err != nil {
		return nil, fmt.Errorf("%w: se %w", ErrMalformed, err)
	}
	if skn != nil {
		if s.KeyName, err = url.QueryUnescape(*skn); err != nil {
			return nil, fmt.Errorf("%w: skn is not valid url-encoding", ErrMalformed)
		}
	}
	return s, nil
}

func parseExpiry(se string) (time.Time, error) {
	if se == "" {
		return time.Time{}, errors.New("is empty")
	}
	for i := 0; i < len(se); i++ {
		if se[i] < '0' || se[i] > '9' {
			return time.Time{}, errors.New("is not unix seconds (digits only)")
		}
	}
	if len(se) > 1 && se[0] == '0' {
		return time.Time{}, errors.New("has leading zeros")
	}
	n, err := strconv.ParseInt(se, 10, 64)
	if err != nil || n > maxExpiry {
		return time.Time{}, errors.New("is beyond year 9999")
	}
	return time.Unix(n, 0).UTC(), nil
}

// String returns the token in the form
// "SharedAccessSignature sr=…&sig=…&se=…[&skn=…]". For a parsed token whose
// Resource is unchanged, sr is written exactly as it was received, so that
// the signature still matches.
func (s *SAS) String() string {
	var b strings.Builder
	b.WriteString(sasPrefix)
	b.WriteString(" sr=")
	b.WriteString(s.encodedResource())
	b.WriteString("&sig=")
	b.WriteString(escape(s.Signature))
	b.WriteString("&se=")
	b.WriteString(strconv.FormatInt(s.Expiry.Unix(), 10))
	if s.KeyName != "" {
		b.WriteString("&skn=")
		b.WriteString(escape(s.KeyName))
	}
	return b.String()
}

// Verify checks that the token grants access to resource at time now. It
// checks three things, in this order, and stops at the first failure:
//
//   - The token's resource covers resource. The two are equal, or the token's
//     resource is a prefix of it that ends at a '/'. Case and a trailing '/'
//     are ignored. A failure wraps ErrWrongResource.
//   - The signature matches one of keys. Pass both the primary and the
//     secondary key so that keys can be rotated. Empty and invalid keys are
//     skipped. A failure wraps ErrBadSignature.
//   - The token expires no more than ClockSkew before now. A token far in
//     the future is accepted, as IoT Hub accepts it. A failure wraps
//     ErrExpired.
//
// Because the signature is checked before the expiry, ErrExpired means that
// the token was genuine and only needs to be renewed.
func (s *SAS) Verify(resource string, now time.Time, keys ...string) error {
	if !covers(s.Resource, resource) {
		return fmt.Errorf("%w: token is for %q, not %q", ErrWrongResource, s.Resource, resource)
	}
	msg := s.stringToSign()
	usable, match := 0, false
	for _, key := range keys {
		k, err := decodeKey(key)
		if err != nil {
			continue
		}
		usable++
		if hmac.Equal([]byte(sign(k, msg)), []byte(s.Signature)) {
			match = true
		}
	}
	if usable == 0 {
		return fmt.Errorf("%w: no valid key to check it against", ErrBadSignature)
	}
	if !match {
		return ErrBadSignature
	}
	if deadline := s.Expiry.Add(ClockSkew); now.After(deadline) {
		return fmt.Errorf("%w at %s (now %s, %s clock skew allowed)", ErrExpired,
			s.Expiry.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), ClockSkew)
	}
	return nil
}

// encodedResource is sr as it goes into the token and the signed string.
func (s *SAS) encodedResource() string {
	if s.sr != "" && s.srFor == s.Resource {
		return s.sr
	}
	return escape(s.Resource)
}

func (s *SAS) stringToSign() string {
	return s.encodedResource() + "\n" + strconv.FormatInt(s.Expiry.Unix(), 10)
}

func sign(key []byte, msg string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// covers reports whether a token for tok grants access to req: the two are
// equal, or tok is a prefix of req that ends at a '/'. ASCII case and
// trailing '/' are ignored. A token whose resource is empty covers nothing.
func covers(tok, req string) bool {
	tok = strings.TrimRight(tok, "/")
	req = strings.TrimRight(req, "/")
	if tok == "" || len(req) < len(tok) || !asciiEqualFold(req[:len(tok)], tok) {
		return false
	}
	return len(req) == len(tok) || req[len(tok)] == '/'
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if asciiLower(a[i]) != asciiLower(b[i]) {
			return false
		}
	}
	return true
}

func asciiToLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				b[j] = asciiLower(b[j])
			}
			return string(b)
		}
	}
	return s
}

func asciiLower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// escape percent-encodes s as a strict RFC 3986 URI component. Every byte
// except A-Z a-z 0-9 and "-._~" becomes %XX with upper-case hex. This equals
// Python's urllib.parse.quote(s, safe=""). It also equals the Node SDK's
// encodeUriComponentStrict, except that Node writes '*' as "%2a".
func escape(s string) string {
	const hex = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', hex[c>>4], hex[c&15])
		}
	}
	return string(b)
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}
