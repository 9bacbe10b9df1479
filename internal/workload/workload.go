// Package workload is the daemon's workload API, IoT Edge's: HTTP on a unix
// socket per module, through which a module's SDK signs its SAS tokens with
// the module's key (which the module never sees), reads the trust bundle
// (the device CA) and gets TLS server certificates from the device CA.
//
// A socket serves one module: a request that names another module is
// refused (403), and one that names a generation of the module that is not
// its current one gets 404, both with IoT Edge's error body {"message": …}.
// Keys come from the syncer's cache, so signing works with the hub
// unreachable.
//
// Routes (each wants ?api-version=, 2018-06-28 or later, as the Azure SDKs
// send it):
//
//	POST /modules/{module}/genid/{genid}/sign                {keyId, algo, data} → {digest}
//	GET  /trust-bundle                                       → {certificate}
//	POST /modules/{module}/genid/{genid}/certificate/server  {commonName, expiration} → {certificate, privateKey, expiration}
package workload

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/deviceca"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/syncer"
)

// MinAPIVersion is the oldest api-version accepted: the one the Azure SDKs
// send (azure-iot-device's WORKLOAD_API_VERSION).
const MinAPIVersion = "2018-06-28"

// maxBody bounds a request body.
const maxBody = 64 << 10

// Config is what a Server needs.
type Config struct {
	// Modules returns the device's module identities with their keys: the
	// syncer's Modules.
	Modules func() ([]hubapi.SyncModule, error)
	// CA issues server certificates; its certificate is the trust bundle.
	CA     *deviceca.CA
	Logger *slog.Logger
	Now    func() time.Time
}

// Server answers the workload API for the modules of one device.
type Server struct {
	cfg Config
	log *slog.Logger
}

// New returns a server.
func New(cfg Config) (*Server, error) {
	if cfg.Modules == nil || cfg.CA == nil {
		return nil, errors.New("workload: Modules and CA are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg, log: cfg.Logger}, nil
}

// Handler returns the handler of module's own socket.
func (s *Server) Handler(module string) http.Handler {
	mux := http.NewServeMux()
	h := &moduleHandler{s: s, module: module}
	mux.HandleFunc("POST /modules/{module}/genid/{genid}/sign", h.withModule(h.sign))
	mux.HandleFunc("POST /modules/{module}/genid/{genid}/certificate/server", h.withModule(h.serverCert))
	mux.HandleFunc("GET /trust-bundle", h.withVersion(h.trustBundle))
	for _, p := range []string{"/modules/{module}/genid/{genid}/encrypt", "/modules/{module}/genid/{genid}/decrypt", "/modules/{module}/certificate/identity"} {
		mux.HandleFunc("POST "+p, func(w http.ResponseWriter, r *http.Request) {
			h.refuse(w, r, http.StatusNotImplemented, "outpost's workload API does not implement %s: it has sign, trust-bundle and certificate/server", r.URL.Path)
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.refuse(w, r, http.StatusNotFound, "no such route: %s %s (the workload API has POST /modules/{module}/genid/{genid}/sign, GET /trust-bundle and POST /modules/{module}/genid/{genid}/certificate/server)", r.Method, r.URL.Path)
	})
	return mux
}

type moduleHandler struct {
	s      *Server
	module string
}

// refuse answers an error with IoT Edge's body and logs who and why.
func (h *moduleHandler) refuse(w http.ResponseWriter, r *http.Request, status int, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	h.s.log.Warn("workload API request refused", "module", h.module, "method", r.Method, "path", r.URL.Path, "status", status, "why", msg)
	writeJSON(w, status, map[string]string{"message": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// withVersion checks api-version.
func (h *moduleHandler) withVersion(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if msg := checkAPIVersion(r.URL.Query().Get("api-version")); msg != "" {
			h.refuse(w, r, http.StatusBadRequest, "%s", msg)
			return
		}
		next(w, r)
	}
}

// checkAPIVersion returns what is wrong with v, or "".
func checkAPIVersion(v string) string {
	if v == "" {
		return "api-version is missing: add ?api-version=" + MinAPIVersion + " (or later) to the request"
	}
	d, err := time.Parse("2006-01-02", strings.TrimSuffix(v, "-preview"))
	if err != nil {
		return fmt.Sprintf("api-version %q is not a date YYYY-MM-DD such as %s", v, MinAPIVersion)
	}
	min, _ := time.Parse("2006-01-02", MinAPIVersion)
	if d.Before(min) {
		return fmt.Sprintf("api-version %s is older than the oldest supported, %s", v, MinAPIVersion)
	}
	return ""
}

// withModule checks api-version, that the request is for this socket's
// module and its current generation, and passes on the module's identity.
func (h *moduleHandler) withModule(next func(http.ResponseWriter, *http.Request, hubapi.SyncModule)) http.HandlerFunc {
	return h.withVersion(func(w http.ResponseWriter, r *http.Request) {
		name, genID := r.PathValue("module"), r.PathValue("genid")
		if name != h.module {
			h.refuse(w, r, http.StatusForbidden, "module %q may not act for module %q: this workload socket serves %q only", h.module, name, h.module)
			return
		}
		mods, err := h.s.cfg.Modules()
		if errors.Is(err, syncer.ErrNotSynced) {
			h.refuse(w, r, http.StatusServiceUnavailable, "the device has not synced with its hub yet, so it has no keys: try again once it has")
			return
		}
		if err != nil {
			h.refuse(w, r, http.StatusInternalServerError, "read the module identities: %v", err)
			return
		}
		for _, m := range mods {
			if m.ModuleID != name {
				continue
			}
			if m.GenerationID != genID {
				h.refuse(w, r, http.StatusNotFound, "module %q has generation id %q, not %q: its identity was made again; restart the module so that it reads the new IOTEDGE_MODULEGENERATIONID", name, m.GenerationID, genID)
				return
			}
			next(w, r, m)
			return
		}
		h.refuse(w, r, http.StatusNotFound, "module %q has no identity on this device (not in the deployment, or removed)", name)
	})
}

// decode reads a JSON body into v.
func (h *moduleHandler) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, "request body: %v (at most %d bytes)", err, maxBody)
		return false
	}
	if err := json.Unmarshal(b, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			h.refuse(w, r, http.StatusBadRequest, "request body: field %s must be a %s, not a JSON %s", te.Field, te.Type, te.Value)
		} else {
			h.refuse(w, r, http.StatusBadRequest, "request body is not valid JSON: %v", err)
		}
		return false
	}
	return true
}

type signRequest struct {
	KeyID string `json:"keyId"`
	Algo  string `json:"algo"`
	Data  string `json:"data"`
}

type signResponse struct {
	Digest string `json:"digest"`
}

func (h *moduleHandler) sign(w http.ResponseWriter, r *http.Request, m hubapi.SyncModule) {
	var req signRequest
	if !h.decode(w, r, &req) {
		return
	}
	var key string
	switch req.KeyID {
	case "primary":
		key = m.PrimaryKey
	case "secondary":
		key = m.SecondaryKey
	case "":
		h.refuse(w, r, http.StatusBadRequest, "keyId is missing: use \"primary\" or \"secondary\"")
		return
	default:
		h.refuse(w, r, http.StatusBadRequest, "keyId %q is unknown: use \"primary\" or \"secondary\"", req.KeyID)
		return
	}
	if req.Algo != "HMACSHA256" {
		h.refuse(w, r, http.StatusBadRequest, "algo %q is not supported: use \"HMACSHA256\"", req.Algo)
		return
	}
	data, err := base64.StdEncoding.DecodeString(req.Data)
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, "data is not valid base64: %v", err)
		return
	}
	if key == "" {
		h.refuse(w, r, http.StatusNotFound, "module %q has no %s key (it does not authenticate with a shared access key)", m.ModuleID, req.KeyID)
		return
	}
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		h.refuse(w, r, http.StatusInternalServerError, "module %q's %s key is not base64: %v", m.ModuleID, req.KeyID, err)
		return
	}
	mac := hmac.New(sha256.New, k)
	mac.Write(data)
	writeJSON(w, http.StatusOK, signResponse{Digest: base64.StdEncoding.EncodeToString(mac.Sum(nil))})
}

type trustBundleResponse struct {
	Certificate string `json:"certificate"`
}

func (h *moduleHandler) trustBundle(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, trustBundleResponse{Certificate: string(h.s.cfg.CA.TrustBundle())})
}

type serverCertRequest struct {
	CommonName string `json:"commonName"`
	Expiration string `json:"expiration"`
}

type privateKey struct {
	Type  string `json:"type"`
	Bytes string `json:"bytes"`
}

type certResponse struct {
	PrivateKey  privateKey `json:"privateKey"`
	Certificate string     `json:"certificate"`
	Expiration  string     `json:"expiration"`
}

func (h *moduleHandler) serverCert(w http.ResponseWriter, r *http.Request, m hubapi.SyncModule) {
	var req serverCertRequest
	if !h.decode(w, r, &req) {
		return
	}
	if req.CommonName == "" {
		h.refuse(w, r, http.StatusBadRequest, "commonName is missing: give the host name the module serves TLS on")
		return
	}
	if len(req.CommonName) > 64 {
		h.refuse(w, r, http.StatusBadRequest, "commonName is %d characters long: at most 64 are allowed", len(req.CommonName))
		return
	}
	now := h.s.cfg.Now()
	var notAfter time.Time
	if req.Expiration != "" {
		t, err := time.Parse(time.RFC3339, req.Expiration)
		if err != nil {
			h.refuse(w, r, http.StatusBadRequest, "expiration %q is not an RFC 3339 time such as %s", req.Expiration, now.Add(24*time.Hour).UTC().Format(time.RFC3339))
			return
		}
		if !t.After(now) {
			h.refuse(w, r, http.StatusBadRequest, "expiration %s is not in the future", req.Expiration)
			return
		}
		notAfter = t
	}
	iss, err := h.s.cfg.CA.IssueServer(deviceca.ServerRequest{CommonName: req.CommonName, Hosts: []string{m.ModuleID}, NotAfter: notAfter}, now)
	if err != nil {
		h.refuse(w, r, http.StatusInternalServerError, "%v", err)
		return
	}
	h.s.log.Info("server certificate issued", "module", m.ModuleID, "cn", req.CommonName, "notAfter", iss.NotAfter.UTC().Format(time.RFC3339))
	writeJSON(w, http.StatusCreated, certResponse{
		PrivateKey:  privateKey{Type: "key", Bytes: string(iss.KeyPEM)},
		Certificate: string(iss.CertPEM),
		Expiration:  iss.NotAfter.UTC().Format(time.RFC3339),
	})
}
