package eventlog

import (
	"bytes"
	"io"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// A WAL written through ZeroFillWAL holds exactly the bytes written,
// followed by zeroes only, while the filler runs alongside the writes; the
// file grows ahead of the writes; other files are left alone.
func TestZeroFillWALConcurrentFillKeepsRecords(t *testing.T) {
	dir := t.TempDir()
	fs := ZeroFillWAL(vfs.Default)
	f, err := fs.Create(filepath.Join(dir, "000002.log"), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var want []byte
	write := func(n int) {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.IntN(255) + 1) // never zero: a zero would hide an overwrite
		}
		if _, err := f.Write(p); err != nil {
			t.Fatal(err)
		}
		want = append(want, p...)
	}
	write(100)
	// The filler runs ahead of the first write.
	deadline := time.Now().Add(10 * time.Second)
	for {
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() >= int64(len(want))+zeroFillAhead {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("file size %d after 10s, want %d zeroed ahead of %d written", fi.Size(), zeroFillAhead, len(want))
		}
		time.Sleep(time.Millisecond)
	}
	// Then writes of every size, past several fills, some syncing.
	for len(want) < 3*zeroFillAhead {
		write(1 + rng.IntN(3*zeroFillPiece))
		if rng.IntN(8) == 0 {
			if err := f.SyncData(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, fs, filepath.Join(dir, "000002.log"))
	if len(got) < len(want) || !bytes.Equal(got[:len(want)], want) {
		t.Fatalf("the file does not start with the %d bytes written (size %d)", len(want), len(got))
	}
	if i := bytes.IndexFunc(got[len(want):], func(r rune) bool { return r != 0 }); i >= 0 {
		t.Fatalf("non-zero byte %d past the written end", len(want)+i)
	}

	other, err := fs.Create(filepath.Join(dir, "MANIFEST-000001"), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Write([]byte("manifest")); err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, fs, filepath.Join(dir, "MANIFEST-000001")); string(got) != "manifest" {
		t.Fatalf("a file other than a WAL was changed: %q", got)
	}
}

func readAll(t *testing.T, fs vfs.FS, name string) []byte {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
