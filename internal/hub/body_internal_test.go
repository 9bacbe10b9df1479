package hub

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestReadBodyOnce: readBody takes the bytes wrap read, unless a handler
// read some of them first; either way it returns the whole body.
func TestReadBodyOnce(t *testing.T) {
	b := []byte(`{"properties":{"desired":{"x":1}}}`)
	r := httptest.NewRequest(http.MethodPatch, "/", nil)
	r.Body = &bodyBytes{bytes.NewReader(b), b}
	got, err := readBody(r)
	if err != nil || &got[0] != &b[0] {
		t.Errorf("readBody copied the body wrap read: %s, %v", got, err)
	}
	spaced := []byte(`  {"x":1}`)
	r.Body = &bodyBytes{bytes.NewReader(spaced), spaced}
	r.Body.Read(make([]byte, 2))
	if got, err := readBody(r); err != nil || string(got) != `{"x":1}` {
		t.Errorf("after a read of 2 bytes: %s, %v", got, err)
	}
	for body, want := range map[string]string{`{"a":`: "malformed JSON body", `{"a":1,"a":2}`: "JSON body: "} {
		r.Body = &bodyBytes{bytes.NewReader([]byte(body)), []byte(body)}
		if _, err := readBody(r); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}
