package federation

import (
	"testing"
)

func TestPolicyCanonicalJSON(t *testing.T) {
	p := Policy{Mode: PolicyAllowlist, Allow: []string{domC, domA, domC}, Block: []string{domB}}
	raw, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"mode":"allowlist","allow":["a.example","c.example"],"block":["127.0.0.1:8102"]}`
	if string(raw) != want {
		t.Fatalf("got %s, want %s", raw, want)
	}
	back, err := ParsePolicy(raw)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := back.Marshal()
	if string(again) != want {
		t.Fatalf("round trip: %s", again)
	}
	if !back.Allowed(domA) || back.Allowed(domB) || back.Allowed("d.example") {
		t.Fatal("Allowed disagrees with the allowlist")
	}
	empty, _ := Policy{}.Marshal()
	if string(empty) != `{"mode":"open","allow":[],"block":[]}` {
		t.Fatalf("zero policy: %s", empty)
	}
	for _, bad := range []string{`{"mode":"closed"}`, `{"mode":"open","allow":["Bad_Domain"]}`, `{"mode":"open","extra":1}`, `{"mode":"open"} {}`} {
		if _, err := ParsePolicy([]byte(bad)); CodeOf(err) != CodeMalformed {
			t.Errorf("ParsePolicy(%s): %v, want %s", bad, err, CodeMalformed)
		}
	}
}

func TestNames(t *testing.T) {
	if got := StreamName("127.0.0.1:8101"); got != "FED_IN_127_0_0_1__8101" {
		t.Fatalf("StreamName = %s", got)
	}
	if StreamName("a.b:1") == StreamName("a.b.1") {
		t.Fatal("stream names collide")
	}
	if got := Subject(domA, domB, SuffixDeliver); got != "hs.a_example.127_0_0_1:8102.deliver" {
		t.Fatalf("Subject = %s", got)
	}
	o, d, s, ok := parseSubject(Subject(domB, domA, SuffixCursor))
	if !ok || o != domB || d != domA || s != SuffixCursor {
		t.Fatalf("parseSubject: %s %s %s %v", o, d, s, ok)
	}
	if !replyAllowed(replySubject(domB, domA, "abc"), domB, domA) || replyAllowed(replySubject(domB, domC, "abc"), domB, domA) ||
		replyAllowed(Subject(domB, domC, SuffixRequest), domB, domA) {
		t.Fatal("replyAllowed")
	}
}
