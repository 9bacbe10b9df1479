package suggest

import "testing"

func TestClosest(t *testing.T) {
	keys := []string{"output", "data", "restartPolicy", "connection-string"}
	for _, tc := range []struct{ in, want string }{
		{"outptu", "output"},               // a swap is one edit
		{"datta", "data"},                  // an insertion
		{"restartpolicy", "restartPolicy"}, // case is ignored
		{"conection-string", "connection-string"},
		{"zzzzzzzz", ""}, // nothing near
		{"", ""},
	} {
		if got := Closest(tc.in, keys); got != tc.want {
			t.Errorf("Closest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"abc", "abc", 0}, {"abc", "acb", 1}, {"kitten", "sitting", 3}, {"héllo", "hello", 1},
	} {
		if got := Distance(tc.a, tc.b); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
