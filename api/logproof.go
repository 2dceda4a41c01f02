package api

import (
	"net/http"
	"strconv"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/validation"
)

func (s *Server) checkpoint(w http.ResponseWriter, r *http.Request) {
	var (
		signed []byte
		err    error
	)
	if q := r.URL.Query().Get("size"); q != "" {
		size, perr := strconv.ParseUint(q, 10, 64)
		if perr != nil || size > s.cfg.Log.Size() {
			s.writeError(w, r, validation.Reject(validation.CodeMalformed, "size must be a number up to the log size"))
			return
		}
		signed, err = s.cfg.Log.SignedCheckpoint(size)
	} else {
		// The stored checkpoint is signed at most once a second; sign the
		// current size when it has moved on.
		size := s.cfg.Log.Size()
		signed, err = s.cfg.Log.LatestCheckpoint()
		if c, perr := eventlog.ParseCheckpoint(eventlog.CheckpointBody(signed)); err != nil || perr != nil || c.Size != size {
			signed, err = s.cfg.Log.SignedCheckpoint(size)
		}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(signed)
}

// ProofReply carries a Merkle proof as base64 hashes.
type ProofReply struct {
	Size  uint64   `json:"size,omitempty"`
	Seq   uint64   `json:"seq,omitempty"`
	Old   uint64   `json:"old,omitempty"`
	New   uint64   `json:"new,omitempty"`
	Proof [][]byte `json:"proof"`
}

func uintParams(r *http.Request, names ...string) ([]uint64, error) {
	out := make([]uint64, len(names))
	for i, n := range names {
		v, err := strconv.ParseUint(r.URL.Query().Get(n), 10, 64)
		if err != nil {
			return nil, validation.Reject(validation.CodeMalformed, "query parameter %s must be a number", n)
		}
		out[i] = v
	}
	return out, nil
}

func (s *Server) inclusionProof(w http.ResponseWriter, r *http.Request) {
	v, err := uintParams(r, "seq", "size")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := s.cfg.Log.ProveInclusion(v[0], v[1])
	if err != nil {
		s.writeError(w, r, validation.Reject(validation.CodeMalformed, "%v", err))
		return
	}
	reply := ProofReply{Seq: v[0], Size: v[1]}
	for _, h := range p {
		reply.Proof = append(reply.Proof, append([]byte(nil), h[:]...))
	}
	writeJSON(w, http.StatusOK, reply)
}

func (s *Server) consistencyProof(w http.ResponseWriter, r *http.Request) {
	v, err := uintParams(r, "old", "new")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := s.cfg.Log.ProveConsistency(v[0], v[1])
	if err != nil {
		s.writeError(w, r, validation.Reject(validation.CodeMalformed, "%v", err))
		return
	}
	reply := ProofReply{Old: v[0], New: v[1], Proof: [][]byte{}}
	for _, h := range p {
		reply.Proof = append(reply.Proof, append([]byte(nil), h[:]...))
	}
	writeJSON(w, http.StatusOK, reply)
}
