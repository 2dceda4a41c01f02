package eventlog

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// The batch ReadWriter of rebuilds and audits remembers what it read; every
// read through it must still equal a read of the batch itself, whatever
// mix of sets, deletes and range deletes came before, and a caller
// changing a returned value must not change what it remembers.
func TestBatchReadWriterReadsAsTheBatch(t *testing.T) {
	db, err := pebble.Open(t.TempDir(), &pebble.Options{Logger: pebbleLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	key := func(i int) []byte { return fmt.Appendf(nil, "p/t/%02d", i) }
	for i := 0; i < 20; i += 2 {
		if err := db.Set(key(i), fmt.Appendf(nil, "db%d", i), pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	b := db.NewIndexedBatch()
	defer b.Close()
	rw := NewBatchReadWriter(b)
	oracle := batchRW{b: b}
	rng := rand.New(rand.NewPCG(1, 2))
	for step := 0; step < 5000; step++ {
		k := key(rng.IntN(20))
		switch op := rng.IntN(10); {
		case op < 5:
			got, gerr := rw.Get(k)
			want, werr := oracle.Get(k)
			if string(got) != string(want) || errors.Is(gerr, ErrNotFound) != errors.Is(werr, ErrNotFound) || (gerr == nil) != (werr == nil) {
				t.Fatalf("step %d: Get(%s) = %q, %v; the batch has %q, %v", step, k, got, gerr, want, werr)
			}
			if len(got) > 0 {
				got[0] ^= 0xff // the caller owns the copy
			}
		case op < 7:
			v := fmt.Appendf(nil, "v%d", step)
			if rng.IntN(4) == 0 {
				v = nil // an empty value is a value, not a missing key
			}
			if err := rw.Set(k, v); err != nil {
				t.Fatal(err)
			}
		case op < 9:
			if err := rw.Delete(k); err != nil {
				t.Fatal(err)
			}
		default:
			if err := rw.DeleteRange(k, key(rng.IntN(21))); err != nil {
				t.Fatal(err)
			}
		}
	}
}
