package api

import (
	"crypto/subtle"
	"net/http"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/validation"
)

// remoteKeys serves another homeserver's public keys, as this homeserver
// knows them, so its clients can verify that homeserver's bundles.
func (s *Server) remoteKeys(w http.ResponseWriter, r *http.Request) {
	d := r.PathValue("domain")
	if d == s.cfg.Domain {
		s.wellKnown(w, r)
		return
	}
	if s.cfg.RemoteKeys == nil {
		s.writeError(w, r, &validation.Error{Code: "federation_unavailable", Status: http.StatusBadGateway, Msg: "no federation configured"})
		return
	}
	b, err := s.cfg.RemoteKeys(r.Context(), d)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeRawJSON(w, http.StatusOK, b)
}

// setPolicy records a new federation policy (FED-1, FED-5) as an event.
func (s *Server) setPolicy(w http.ResponseWriter, r *http.Request) {
	if s.cfg.AdminToken == "" || s.cfg.NormalizePolicy == nil {
		s.writeError(w, r, &validation.Error{Code: "admin_disabled", Status: http.StatusForbidden, Msg: "the admin API is not enabled (--admin-token)"})
		return
	}
	want := "Bearer " + s.cfg.AdminToken
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) != 1 {
		s.writeError(w, r, validation.Reject(validation.CodeUnauthenticated, "admin token required"))
		return
	}
	body, err := readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := s.cfg.NormalizePolicy(body)
	if err != nil {
		s.writeError(w, r, validation.Reject(validation.CodeBadPolicy, "%v", err))
		return
	}
	out, err := s.append(r, eventlog.Command{Body: validation.SetFederationPolicy{Policy: p}})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.cfg.PolicyChanged != nil {
		s.cfg.PolicyChanged(p)
	}
	writeRawJSON(w, http.StatusOK, out.Reply)
}
