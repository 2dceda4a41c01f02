package eventlog

import "encoding/binary"

var (
	keyMeta       = []byte("log/meta")
	keyCheckpoint = []byte("log/ckpt")
	prefixEvent   = []byte("log/ev/")
	prefixHash    = []byte("log/h/")
	prefixIdem    = []byte("log/idem/")
	// PrefixLog is the start of every key the log owns.
	PrefixLog = []byte("log/")
)

func eventKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), prefixEvent...), seq)
}

// hashKey is the key of the Merkle hashes stored when record n (event
// n+1) was appended: its leaf hash and the roots of the subtrees it
// completed, in level order.
func hashKey(n int64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), prefixHash...), uint64(n))
}

func idemKey(key []byte) []byte {
	return append(append([]byte(nil), prefixIdem...), key...)
}

// PrefixEnd returns the smallest key greater than every key with the prefix.
func PrefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // prefix is all 0xff: no upper bound
}
