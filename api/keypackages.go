package api

import (
	"net/http"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/projections"
	"github.com/mlshome/homeserver/validation"
)

// PublishKeyPackagesRequest replaces the signing client's KeyPackages.
type PublishKeyPackagesRequest struct {
	KeyPackages [][]byte `json:"key_packages"`
}

// KeyPackageCount is the reply of GET /v1/keypackages/count.
type KeyPackageCount struct {
	Count      int `json:"count"`
	LastResort int `json:"last_resort"`
}

func (s *Server) publishKeyPackages(w http.ResponseWriter, r *http.Request) {
	var req PublishKeyPackagesRequest
	client := s.signedBody(w, r, &req)
	if client == nil {
		return
	}
	// The expensive, stateless part (signatures, queue configs) runs here,
	// on the request goroutine; the writer re-checks lifetimes at batch time.
	kps, err := s.cfg.Validator.CheckKeyPackages(client.ClientID, req.KeyPackages, s.cfg.Now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.submit(w, r, eventlog.Command{Body: validation.PublishKeyPackages{
		UserID: client.UserID, ClientID: client.ClientID, KeyPackages: kps,
	}}, http.StatusOK)
}

func (s *Server) countKeyPackages(w http.ResponseWriter, r *http.Request) {
	client, err := s.authenticate(r, nil)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	kps, err := projections.KeyPackageView{R: s.reader()}.List(client.UserID, client.ClientID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	now := uint64(s.cfg.Now().Unix())
	var c KeyPackageCount
	for _, kp := range kps {
		if now < kp.NotBefore || now > kp.NotAfter {
			continue
		}
		c.Count++
		if kp.LastResort {
			c.LastResort++
		}
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) reader() eventlog.Reader { return s.cfg.Log.Reader() }
