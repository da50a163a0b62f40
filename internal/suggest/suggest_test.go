package suggest

import "testing"

func TestClosest(t *testing.T) {
	keys := []string{"address", "username", "password", "options", "cipher_suites", "administrator", "wait_landing"}
	tests := []struct{ in, want string }{
		{"adress", "address"},
		{"PassWord", "password"},
		{"cipher-suites", "cipher_suites"},
		{"admin", "administrator"},
		{"wait", "wait_landing"},
		{"colour", ""},
		{"", ""},
		{"opts", ""},
	}
	for _, tt := range tests {
		if got := Closest(tt.in, keys); got != tt.want {
			t.Errorf("Closest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := DidYouMean("ipmj", []string{"ipmi", "redfish"}); got != ` (did you mean "ipmi"?)` {
		t.Errorf("DidYouMean = %q", got)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"abc", "abc", 0}, {"abc", "abd", 1}, {"kitten", "sitting", 3}, {"", "xyz", 3}} {
		if got := EditDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
