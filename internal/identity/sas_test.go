package identity

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type sasVector struct {
	Name         string `json:"name"`
	Encoding     string `json:"encoding"`
	Resource     string `json:"resource"`
	Key          string `json:"key"`
	Expiry       int64  `json:"expiry"`
	KeyName      string `json:"keyName"`
	StringToSign string `json:"stringToSign"`
	Token        string `json:"token"`
}

type sasVectors struct {
	Keys    map[string]string `json:"keys"`
	Cases   []sasVector       `json:"cases"`
	Foreign []sasVector       `json:"foreign"`
}

func loadVectors(t *testing.T) sasVectors {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "fixtures", "identity", "sas_vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v sasVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Cases) < 15 || len(v.Foreign) < 5 {
		t.Fatalf("only %d cases and %d foreign tokens in sas_vectors.json", len(v.Cases), len(v.Foreign))
	}
	return v
}

func TestSASVectors(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.Cases {
		t.Run(c.Name, func(t *testing.T) {
			exp := time.Unix(c.Expiry, 0)
			got, err := NewSAS(c.Resource, c.Key, exp, c.KeyName)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.Token {
				t.Fatalf("NewSAS:\n got %s\nwant %s", got, c.Token)
			}
			s, err := ParseSAS(c.Token)
			if err != nil {
				t.Fatal(err)
			}
			if s.Resource != c.Resource || !s.Expiry.Equal(exp) || s.KeyName != c.KeyName {
				t.Errorf("ParseSAS = %q %v %q, want %q %v %q", s.Resource, s.Expiry, s.KeyName, c.Resource, exp, c.KeyName)
			}
			if got := s.stringToSign(); got != c.StringToSign {
				t.Errorf("string to sign = %q, want %q", got, c.StringToSign)
			}
			if got := s.String(); got != c.Token {
				t.Errorf("String() = %s, want %s", got, c.Token)
			}
			if err := s.Verify(c.Resource, exp.Add(-time.Minute), c.Key); err != nil {
				t.Errorf("Verify: %v", err)
			}
			if err := s.Verify(c.Resource, exp.Add(-time.Minute), v.Keys["long"], c.Key); err != nil {
				t.Errorf("Verify with the key second: %v", err)
			}
		})
	}
}

// TestSASForeignEncodings checks tokens as other Azure SDKs encode sr and
// sig. They verify because the signature is checked over sr as received.
func TestSASForeignEncodings(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.Foreign {
		t.Run(c.Name, func(t *testing.T) {
			exp := time.Unix(c.Expiry, 0)
			s, err := ParseSAS(c.Token)
			if err != nil {
				t.Fatal(err)
			}
			if s.Resource != c.Resource || !s.Expiry.Equal(exp) || s.KeyName != c.KeyName {
				t.Errorf("ParseSAS = %q %v %q, want %q %v %q", s.Resource, s.Expiry, s.KeyName, c.Resource, exp, c.KeyName)
			}
			if err := s.Verify(c.Resource, exp, c.Key); err != nil {
				t.Errorf("Verify: %v", err)
			}
			// Re-serialised, the token keeps its sr and still verifies.
			s2, err := ParseSAS(s.String())
			if err != nil {
				t.Fatal(err)
			}
			if err := s2.Verify(c.Resource, exp, c.Key); err != nil {
				t.Errorf("Verify after String(): %v", err)
			}
			// Changing Resource drops the received encoding.
			s2.Resource = strings.ToUpper(s2.Resource)
			if s2.encodedResource() != escape(s2.Resource) {
				t.Errorf("changed Resource still uses the received sr")
			}
		})
	}
}

const (
	testKey1 = "tVxl+eCMLcMiI5xVR+36DQwHuM9/EIhDgA7mGLpayN0="
	testKey2 = "9uajpOXap86oFwRteP1JCZx35xV3zpbgHqcNMLYSC3k="
	testKey3 = "BwUFiaQ2J7Zkm85wGjIOww=="
)

var testExpiry = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func mustSAS(t *testing.T, resource, key string, exp time.Time, keyName string) *SAS {
	t.Helper()
	tok, err := NewSAS(resource, key, exp, keyName)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSAS(tok)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSASExpiry(t *testing.T) {
	s := mustSAS(t, "hub/devices/d1", testKey1, testExpiry, "")
	for _, c := range []struct {
		name string
		now  time.Time
		ok   bool
	}{
		{"well before", testExpiry.Add(-time.Hour), true},
		{"at expiry", testExpiry, true},
		{"just past", testExpiry.Add(time.Second), true},
		{"within skew", testExpiry.Add(4*time.Minute + 59*time.Second), true},
		{"at skew", testExpiry.Add(ClockSkew), true},
		{"beyond skew", testExpiry.Add(ClockSkew + time.Second), false},
		{"long gone", testExpiry.Add(24 * time.Hour), false},
		{"far future token", testExpiry.Add(-10 * 365 * 24 * time.Hour), true},
	} {
		err := s.Verify("hub/devices/d1", c.now, testKey1)
		if c.ok != (err == nil) {
			t.Errorf("%s: Verify = %v", c.name, err)
		}
		if !c.ok && !errors.Is(err, ErrExpired) {
			t.Errorf("%s: error %v is not ErrExpired", c.name, err)
		}
	}
}

func TestSASTampered(t *testing.T) {
	tok, err := NewSAS("hub/devices/d1", testKey1, testExpiry, "")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := ParseSAS(tok)
	now := testExpiry.Add(-time.Hour)

	flipped := *s
	b := []byte(flipped.Signature)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	flipped.Signature = string(b)

	later := *s
	later.Expiry = s.Expiry.Add(time.Hour)

	other := *s
	other.Resource = "hub/devices/d1/modules/m1"

	withName := *s
	withName.KeyName = "owner" // skn is not signed, so this still verifies

	for name, c := range map[string]*SAS{"signature": &flipped, "expiry": &later, "resource": &other} {
		err := c.Verify(c.Resource, now, testKey1)
		if !errors.Is(err, ErrBadSignature) {
			t.Errorf("tampered %s: Verify = %v, want ErrBadSignature", name, err)
		}
		if err != nil && strings.Contains(err.Error(), s.Signature) {
			t.Errorf("error contains the signature: %v", err)
		}
	}
	if err := withName.Verify(s.Resource, now, testKey1); err != nil {
		t.Errorf("skn changed: %v", err)
	}

	// Tampering with the token text.
	for _, bad := range []string{
		strings.Replace(tok, "se=", "se=1", 1),
		strings.Replace(tok, "d1", "d2", 1),
		strings.Replace(tok, "%2F", "%2f", 1), // the hex case of sr is signed too
	} {
		s2, err := ParseSAS(bad)
		if err != nil {
			t.Fatalf("ParseSAS(%s): %v", bad, err)
		}
		if err := s2.Verify(s2.Resource, now, testKey1); !errors.Is(err, ErrBadSignature) {
			t.Errorf("Verify(%s) = %v, want ErrBadSignature", bad, err)
		}
	}
}

func TestSASResource(t *testing.T) {
	now := testExpiry.Add(-time.Hour)
	for _, c := range []struct {
		token, req string
		ok         bool
	}{
		{"hub.example/devices/d1", "hub.example/devices/d1", true},
		{"hub.example", "hub.example/devices/d1", true},
		{"hub.example", "hub.example/devices/d1/modules/m1", true},
		{"hub.example/devices/d1", "hub.example/devices/d1/modules/m1", true},
		{"hub.example/devices/d1/", "hub.example/devices/d1", true},
		{"hub.example/devices/d1", "hub.example/devices/d1/", true},
		{"hub.example/devices/d1/", "hub.example/devices/d1/modules/m1", true},
		{"HUB.Example/Devices/D1", "hub.example/devices/d1", true},
		{"hub.example/devices/d1", "HUB.EXAMPLE/DEVICES/D1/modules/m1", true},
		{"hub.example:8443/devices/d1", "hub.example:8443/devices/d1", true},
		{"hub.example/devices/d1", "hub.example/devices/d2", false},
		{"hub.example/devices/d1", "hub.example/devices/d10", false},
		{"hub.example/devices/d1", "hub.example/devices/d1-x/modules/m", false},
		{"hub.example/devices/d1/modules/m1", "hub.example/devices/d1", false},
		{"hub.example/devices/d1/modules/m1", "hub.example/devices/d1/modules/m2", false},
		{"hub.example", "hub.example.evil", false},
		{"hub.example", "other.example/devices/d1", false},
		{"hub.example:8443", "hub.example/devices/d1", false},
		{"hub.example/devices/d1", "", false},
		{"/", "/devices/d1", false},
		{"hub.example/devices/\u212a", "hub.example/devices/k", false}, // ASCII case folding only
	} {
		s := mustSAS(t, c.token, testKey1, testExpiry, "")
		err := s.Verify(c.req, now, testKey1)
		if c.ok != (err == nil) {
			t.Errorf("token for %q, request %q: Verify = %v, want ok=%v", c.token, c.req, err, c.ok)
		}
		if !c.ok && !errors.Is(err, ErrWrongResource) {
			t.Errorf("token for %q, request %q: %v is not ErrWrongResource", c.token, c.req, err)
		}
	}
}

func TestSASKeyRotation(t *testing.T) {
	now := testExpiry.Add(-time.Hour)
	const res = "hub/devices/d1/modules/m1"
	primary := mustSAS(t, res, testKey1, testExpiry, "")
	secondary := mustSAS(t, res, testKey2, testExpiry, "")
	old := mustSAS(t, res, testKey3, testExpiry, "")

	for name, s := range map[string]*SAS{"primary": primary, "secondary": secondary} {
		if err := s.Verify(res, now, testKey1, testKey2); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := old.Verify(res, now, testKey1, testKey2); !errors.Is(err, ErrBadSignature) {
		t.Errorf("old key: Verify = %v, want ErrBadSignature", err)
	}
	// An empty or broken secondary is skipped, not fatal.
	if err := primary.Verify(res, now, testKey1, ""); err != nil {
		t.Errorf("empty secondary: %v", err)
	}
	if err := secondary.Verify(res, now, "not a key", testKey2); err != nil {
		t.Errorf("broken primary: %v", err)
	}
	for _, keys := range [][]string{nil, {""}, {"", "%%%"}} {
		err := primary.Verify(res, now, keys...)
		if !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "no valid key") {
			t.Errorf("keys %q: Verify = %v", keys, err)
		}
	}
}

func TestSASCheckOrder(t *testing.T) {
	// Wrong resource is reported first, then the signature, then the expiry.
	s := mustSAS(t, "hub/devices/d1", testKey1, testExpiry, "")
	late := testExpiry.Add(time.Hour)
	if err := s.Verify("hub/devices/d2", late, testKey2); !errors.Is(err, ErrWrongResource) {
		t.Errorf("got %v, want ErrWrongResource", err)
	}
	if err := s.Verify("hub/devices/d1", late, testKey2); !errors.Is(err, ErrBadSignature) {
		t.Errorf("got %v, want ErrBadSignature", err)
	}
	err := s.Verify("hub/devices/d1", late, testKey1)
	if !errors.Is(err, ErrExpired) || errors.Is(err, ErrBadSignature) {
		t.Errorf("got %v, want ErrExpired", err)
	}
	if want := "sas token expired at 2030-01-02T03:04:05Z"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q does not start with %q", err, want)
	}
}

func TestParseSAS(t *testing.T) {
	tok, err := NewSAS("hub/devices/d1", testKey1, testExpiry, "owner")
	if err != nil {
		t.Fatal(err)
	}
	want, err := ParseSAS(tok)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.TrimPrefix(tok, "SharedAccessSignature ")
	parts := strings.Split(fields, "&")
	reversed := make([]string, len(parts))
	for i, p := range parts {
		reversed[len(parts)-1-i] = p
	}
	for _, in := range []string{
		fields,
		"  " + tok + "\n",
		"SharedAccessSignature   " + fields,
		"SharedAccessSignature " + strings.Join(reversed, "&"),
		"SharedAccessSignature " + strings.Join(parts, "&&") + "&",
		"SharedAccessSignature " + strings.Replace(strings.Replace(fields, "sr=", "SR=", 1), "sig=", "Sig=", 1),
		"SharedAccessSignature " + fields + "&unknown=1",
	} {
		s, err := ParseSAS(in)
		if err != nil {
			t.Errorf("ParseSAS(%q): %v", in, err)
			continue
		}
		if s.Resource != want.Resource || s.Signature != want.Signature || !s.Expiry.Equal(want.Expiry) || s.KeyName != want.KeyName {
			t.Errorf("ParseSAS(%q) = %+v, want %+v", in, s, want)
		}
		if err := s.Verify("hub/devices/d1", testExpiry, testKey1); err != nil {
			t.Errorf("ParseSAS(%q).Verify: %v", in, err)
		}
	}
	if want.Expiry.Location() != time.UTC {
		t.Errorf("Expiry is in %v, want UTC", want.Expiry.Location())
	}
}

func TestParseSASErrors(t *testing.T) {
	const sig = "c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmE%3D"
	for in, want := range map[string]string{
		"":                                                   "no fields",
		"SharedAccessSignature":                              "no fields",
		"SharedAccessSignature   ":                           "no fields",
		"sig=" + sig + "&se=1":                               "missing sr",
		"sr=hub&se=1":                                        "missing sig",
		"sr=hub&sig=" + sig:                                  "missing se",
		"sr=&sig=" + sig + "&se=1":                           "sr is empty",
		"sr=hub&sig=&se=1":                                   "sig is empty",
		"sr=hub&sig=" + sig + "&se=":                         "se is empty",
		"sr=hub&sig=" + sig + "&se=-1":                       "se is not unix seconds",
		"sr=hub&sig=" + sig + "&se=+1":                       "se is not unix seconds",
		"sr=hub&sig=" + sig + "&se=1.5":                      "se is not unix seconds",
		"sr=hub&sig=" + sig + "&se=01":                       "se has leading zeros",
		"sr=hub&sig=" + sig + "&se=1e9":                      "se is not unix seconds",
		"sr=hub&sig=" + sig + "&se=99999999999999999999":     "se is beyond year 9999",
		"sr=hub&sig=" + sig + "&se=253402300800":             "se is beyond year 9999",
		"sr=hub%zz&sig=" + sig + "&se=1":                     "sr is not valid url-encoding",
		"sr=hub&sig=" + sig + "%&se=1":                       "sig is not valid url-encoding",
		"sr=hub&sig=" + sig + "&se=1&skn=%":                  "skn is not valid url-encoding",
		"sr=hub&sr=hub&sig=" + sig + "&se=1":                 "sr appears twice",
		"sr=hub&SIG=" + sig + "&sig=x&se=1":                  "sig appears twice",
		"sr=hub&" + sig + "&se=1":                            "field 2 is not name=value",
		"SharedAccessSignature sr=hub&sig=" + sig + " &se=1": "unexpected whitespace",
		"Bearer sr=hub&sig=" + sig + "&se=1":                 "unexpected whitespace",
	} {
		_, err := ParseSAS(in)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSAS(%q) = %v, want ErrMalformed containing %q", in, err, want)
			continue
		}
		if strings.Contains(err.Error(), "c2lnbmF0") {
			t.Errorf("error contains the signature: %v", err)
		}
	}
}

func TestNewSASErrors(t *testing.T) {
	for _, c := range []struct {
		resource, key string
		exp           time.Time
		want          string
	}{
		{"", testKey1, testExpiry, "resource is empty"},
		{"hub", "", testExpiry, "key is empty"},
		{"hub", "bm90IGEga2V5", testExpiry, "key decodes to 9 bytes"},
		{"hub", testKey1, time.Time{}, "outside 1970 to 9999"},
		{"hub", testKey1, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), "outside 1970 to 9999"},
	} {
		_, err := NewSAS(c.resource, c.key, c.exp, "")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewSAS(%q, %q, %v) = %v, want %q", c.resource, c.key, c.exp, err, c.want)
		}
	}
	// Sub-second expiries are truncated.
	a, _ := NewSAS("hub", testKey1, testExpiry.Add(999*time.Millisecond), "")
	b, _ := NewSAS("hub", testKey1, testExpiry, "")
	if a != b {
		t.Errorf("sub-second expiry changed the token: %s vs %s", a, b)
	}
}

func TestSASStringBuilt(t *testing.T) {
	// A SAS built by hand (not parsed) encodes its Resource.
	s := &SAS{Resource: "hub/devices/d*1", Signature: "a+b/c=", Expiry: time.Unix(42, 0), KeyName: "p q"}
	want := "SharedAccessSignature sr=hub%2Fdevices%2Fd%2A1&sig=a%2Bb%2Fc%3D&se=42&skn=p%20q"
	if got := s.String(); got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"":                           "",
		"AZaz09-._~":                 "AZaz09-._~",
		"!'()*":                      "%21%27%28%29%2A",
		" +/:=?#@$&%,;\"<>[]\\^`{|}": "%20%2B%2F%3A%3D%3F%23%40%24%26%25%2C%3B%22%3C%3E%5B%5D%5C%5E%60%7B%7C%7D",
		"\x00\n\x7f\xff":             "%00%0A%7F%FF",
		"ü":                          "%C3%BC",
	} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}
