package projections

import (
	"encoding/hex"
	"testing"
)

func TestDecodeMemoIsExact(t *testing.T) {
	m := newDecodeMemo[GroupMeta](2, nil)
	a, err := m.get([]byte(`{"epoch":1,"cipher_suite":1,"members":2}`))
	if err != nil {
		t.Fatal(err)
	}
	again, _ := m.get([]byte(`{"epoch":1,"cipher_suite":1,"members":2}`))
	if again != a {
		t.Fatal("same bytes decoded twice")
	}
	b, _ := m.get([]byte(`{"epoch":2,"cipher_suite":1,"members":2}`))
	if b.Epoch != 2 || a.Epoch != 1 {
		t.Fatalf("changed record read as %+v (old %+v)", b, a)
	}
	m.get([]byte(`{"epoch":3,"cipher_suite":1,"members":2}`))
	if len(m.m) > 2 {
		t.Fatalf("%d entries, bound 2", len(m.m))
	}
	if _, err := m.get([]byte(`{"epoch":"x"}`)); err == nil {
		t.Fatal("bad record decoded")
	}
}

// Keys built in one allocation are the keys the stores already hold.
func TestHexKeysUnchanged(t *testing.T) {
	gid := []byte("hs.example/0123456789abcdef")
	h := hex.EncodeToString(gid)
	for _, tc := range []struct{ got, want []byte }{
		{GroupKey(gid), append(Prefix(grpName), h+"/"...)},
		{grpMetaKey(gid), append(Prefix(grpName), h+"/meta"...)},
		{recipientsKey(gid), append(Prefix(qName), "g/"+h...)},
		{outMembersKey(gid), append(Prefix(outName), "g/"+h...)},
		{blockKey("c1", gid), append(Prefix(qName), "b/c1/"+h...)},
		{tokSpentKey(gid), append(Prefix(tokName), "spent/"+h...)},
	} {
		if string(tc.got) != string(tc.want) {
			t.Errorf("key %q, want %q", tc.got, tc.want)
		}
	}
}
