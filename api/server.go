package api

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/tokens"
	"github.com/mlshome/homeserver/validation"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config wires a Server.
type Config struct {
	Domain  string
	Log     *eventlog.Log
	Keys    Keys
	Logger  *slog.Logger
	Metrics *Metrics
	// Ready reports whether the homeserver can serve (nil: ready when the
	// log is open).
	Ready func() error
	// RequestWindow is how far a signed request's timestamp may be from
	// the server's clock (default 2 minutes).
	RequestWindow time.Duration
	// Now is the clock for request freshness checks (default time.Now).
	Now func() time.Time
	// Validator runs the stateless checks on request goroutines.
	Validator *validation.Validator
	// Limits are the directory rate limits (zero value: defaults).
	Limits *DirectoryLimits
	// GroupLimits are the MD-8 limits (nil: defaults).
	GroupLimits *GroupLimits
	// Tokens issues and redeems group-creation tokens.
	Tokens *tokens.Issuer
	// GroupRelay carries group requests for groups owned elsewhere.
	GroupRelay GroupRelay
	// RemoteKeys returns another homeserver's public keys document, as
	// this homeserver pinned it (for clients verifying bundles, GUC-3).
	RemoteKeys func(ctx context.Context, domain string) ([]byte, error)
	// RegistrationToken, if set, must be presented (Authorization: Bearer)
	// to register a user; empty leaves registration open.
	RegistrationToken string
	// AdminToken guards /v1/admin; empty disables the admin API.
	AdminToken string
	// SetPolicy normalises a federation policy (JSON) before it is
	// recorded; nil disables policy changes.
	NormalizePolicy func([]byte) ([]byte, error)
	// PolicyChanged, if set, is called with a policy once it is recorded
	// (the log watcher applies it too; this closes the gap before it does).
	PolicyChanged func([]byte)
	// Relay carries directory requests for other homeservers' users; nil
	// answers them with federation_unavailable.
	Relay Relay
}

// Server serves the client API.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
	mux     *http.ServeMux
	limits  directoryLimiters

	groupLimits groupLimiters
}

// New builds the server and its routes.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RequestWindow == 0 {
		cfg.RequestWindow = 2 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	limits := DefaultDirectoryLimits
	if cfg.Limits != nil {
		limits = *cfg.Limits
	}
	gl := DefaultGroupLimits
	if cfg.GroupLimits != nil {
		gl = *cfg.GroupLimits
	}
	s := &Server{cfg: cfg, log: cfg.Logger, metrics: cfg.Metrics, mux: http.NewServeMux(), limits: newDirectoryLimiters(limits), groupLimits: newGroupLimiters(gl)}
	s.route("GET /healthz", s.healthz)
	s.route("GET /readyz", s.readyz)
	if cfg.Metrics != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Metrics.Registry, promhttp.HandlerOpts{}))
	}
	s.route("GET /.well-known/mls-homeserver", s.wellKnown)
	s.route("POST /v1/users", s.registerUser)
	s.route("POST /v1/clients", s.registerClient)
	s.route("PUT /v1/keypackages", s.publishKeyPackages)
	s.route("GET /v1/keypackages/count", s.countKeyPackages)
	s.route("POST /v1/directory/lookup", s.lookup)
	s.route("POST /v1/directory/claim", s.claim)
	s.route("GET /v1/tokens/keys", s.tokenKeys)
	s.route("POST /v1/tokens", s.issueTokens)
	s.route("POST /v1/groups", s.createGroup)
	s.route("POST /v1/groups/{group}/handshake", s.groupRequest(RelayHandshake))
	s.route("POST /v1/groups/{group}/messages", s.groupRequest(RelayMessage))
	s.route("GET /v1/federation/keys/{domain}", s.remoteKeys)
	s.route("PUT /v1/admin/federation/policy", s.setPolicy)
	s.route("GET /v1/queue", s.fetchQueue)
	s.route("POST /v1/queue/ack", s.ackQueue)
	s.route("POST /v1/queue/block", s.blockGroup)
	s.route("GET /v1/log/checkpoint", s.checkpoint)
	s.route("GET /v1/log/proof/inclusion", s.inclusionProof)
	s.route("GET /v1/log/proof/consistency", s.consistencyProof)
	return s
}

// Handler returns the root HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Flush lets streaming handlers flush through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// route registers h under pattern with metrics and a body size limit.
func (s *Server) route(pattern string, h http.HandlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes+1)
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h(sw, r)
		if s.metrics != nil {
			s.metrics.Requests.WithLabelValues(pattern, strconv.Itoa(sw.status)).Inc()
			s.metrics.RequestTimes.WithLabelValues(pattern).Observe(time.Since(start).Seconds())
		}
	})
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "log_size": s.cfg.Log.Size()})
}
