package identity

import (
	"errors"
	"strings"
	"testing"
)

func TestParseUserID(t *testing.T) {
	good := []struct{ in, name, domain string }{
		{"alice@example.org", "alice", "example.org"},
		{"a.b_c-9@hs1.test", "a.b_c-9", "hs1.test"},
		{"bob@localhost:8443", "bob", "localhost:8443"},
		{"bob@127.0.0.1:1", "bob", "127.0.0.1:1"},
		{strings.Repeat("x", 64) + "@x", strings.Repeat("x", 64), "x"},
	}
	for _, tc := range good {
		u, err := ParseUserID(tc.in)
		if err != nil {
			t.Errorf("ParseUserID(%q): %v", tc.in, err)
			continue
		}
		if u.Name != tc.name || u.Domain != tc.domain || u.String() != tc.in {
			t.Errorf("ParseUserID(%q) = %+v", tc.in, u)
		}
	}
	bad := []string{
		"", "alice", "@example.org", "alice@", "Alice@example.org", "alice@Example.org",
		"al ice@example.org", "alice@@example.org", "alice@exa_mple.org", "alice@-example.org",
		"alice@example-.org", "alice@example..org", "alice@.example.org", "alice@example.org.",
		"alice@example.org:0", "alice@example.org:65536", "alice@example.org:08443",
		"alice@example.org:", "alice@:8443", strings.Repeat("x", 65) + "@example.org",
		"alice@" + strings.Repeat("a", 64) + ".org", "alice@exämple.org", "ali\x00ce@example.org",
	}
	for _, in := range bad {
		_, err := ParseUserID(in)
		if !errors.Is(err, &Error{Code: CodeBadUserID}) {
			t.Errorf("ParseUserID(%q) = %v, want code %s", in, err, CodeBadUserID)
		}
	}
}

func TestValidateClientID(t *testing.T) {
	for _, ok := range []string{"c1", "A-b_c.d~e", strings.Repeat("z", 64)} {
		if err := ValidateClientID(ok); err != nil {
			t.Errorf("ValidateClientID(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a b", "a/b", "a\nb", "é", strings.Repeat("z", 65)} {
		wantCode(t, ValidateClientID(bad), CodeBadClientID)
	}
}

func TestErrorIsMatchesCode(t *testing.T) {
	err := error(errorf(CodeExpired, "late"))
	if !errors.Is(err, &Error{Code: CodeExpired}) {
		t.Error("errors.Is by code failed")
	}
	if errors.Is(err, &Error{Code: CodeReplayed}) {
		t.Error("errors.Is matched another code")
	}
	if CodeOf(errors.New("plain")) != "" {
		t.Error("CodeOf of a plain error is not empty")
	}
	if got := err.Error(); got != "expired: late" {
		t.Errorf("Error() = %q", got)
	}
}
