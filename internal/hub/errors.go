package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

// apiError is an error with an HTTP status and IoT Hub's error code.
type apiError struct {
	status int
	code   string // IoT Hub's ErrorCode, e.g. DeviceNotFound
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, code, format string, a ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, a...)}
}

// errorBody is IoT Hub's error document.
type errorBody struct {
	Message          string `json:"Message"`
	ExceptionMessage string `json:"ExceptionMessage"`
}

// toAPIError maps an error of the registry (or of a twin) to a status.
func toAPIError(err error, kind string) *apiError {
	var ae *apiError
	var te *twin.Error
	var mbe *http.MaxBytesError
	var nf *registry.NotFoundError
	var se *store.SpaceError
	switch {
	case errors.As(err, &se):
		// The hub's store is DATA/store: name the data dir, which is what users know.
		return errorf(http.StatusInsufficientStorage, "InsufficientStorage",
			"the hub's data dir %s is out of disk space (%v); nothing was changed: free space on its file system (or raise the quota), then retry",
			filepath.Dir(se.Dir), se.Err)
	case errors.Is(err, store.ErrUnavailable):
		return errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "%v", err)
	case errors.Is(err, registry.ErrManaged):
		return errorf(http.StatusConflict, "DeviceManagedByConfiguration", "%v", err)
	case errors.As(err, &nf):
		return errorf(http.StatusNotFound, nf.Kind+"NotFound", "%v", err)
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, "MessageTooLarge", "request body over %d bytes", mbe.Limit)
	case errors.Is(err, registry.ErrNotFound):
		return errorf(http.StatusNotFound, kind+"NotFound", "%v", err)
	case errors.Is(err, registry.ErrExists):
		code := kind + "AlreadyExists"
		if kind == "Module" {
			code = "ModuleAlreadyExistsOnDevice"
		}
		return errorf(http.StatusConflict, code, "%v", err)
	case errors.Is(err, registry.ErrPrecondition):
		return errorf(http.StatusPreconditionFailed, "PreconditionFailed", "%v", err)
	case errors.As(err, &te), errors.Is(err, registry.ErrInvalid):
		return errorf(http.StatusBadRequest, "ArgumentInvalid", "%v", err)
	}
	return errorf(http.StatusInternalServerError, "ServerError", "%v", err)
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("iothub-errorcode", e.code)
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(errorBody{
		Message:          "ErrorCode:" + e.code + ";" + e.msg,
		ExceptionMessage: e.msg,
	})
}

// jsonContentType is every JSON answer's Content-Type, one slice for all
// (net/http only reads it; an Add would append to a copy, len = cap = 1).
var jsonContentType = []string{"application/json; charset=utf-8"}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	if raw, ok := v.([]byte); ok {
		w.Write(raw)
		return
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}
