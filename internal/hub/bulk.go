package hub

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/registry"
)

// MaxBulkDevices is how many devices one bulk registry operation may name,
// as IoT Hub.
const MaxBulkDevices = 100

// importDevice is one element of a bulk registry operation: IoT Hub's
// ExportImportDevice. Its members are matched without regard to case, as
// IoT Hub does ("eTag" and "etag" both name the etag).
type importDevice struct {
	ID             string                   `json:"id"`
	ModuleID       string                   `json:"moduleId"`
	ETag           string                   `json:"eTag"`
	ImportMode     string                   `json:"importMode"`
	Status         string                   `json:"status"`
	StatusReason   string                   `json:"statusReason"`
	Authentication *registry.Authentication `json:"authentication"`
	Capabilities   *registry.Capabilities   `json:"capabilities"`
	DeviceScope    *string                  `json:"deviceScope"`
	ParentScopes   []string                 `json:"parentScopes"`
	Tags           json.RawMessage          `json:"tags"`
	Properties     json.RawMessage          `json:"properties"`
}

// bulkResult is IoT Hub's BulkRegistryOperationResult.
type bulkResult struct {
	IsSuccessful bool          `json:"isSuccessful"`
	Errors       []bulkError   `json:"errors"`
	Warnings     []bulkWarning `json:"warnings"`
}

type bulkError struct {
	DeviceID    string `json:"deviceId"`
	ErrorCode   string `json:"errorCode"`
	ErrorStatus string `json:"errorStatus"`
}

type bulkWarning struct {
	DeviceID      string `json:"deviceId"`
	WarningCode   string `json:"warningCode"`
	WarningStatus string `json:"warningStatus"`
}

// bulkDevices serves POST /devices, IoT Hub's bulk registry operation: up
// to MaxBulkDevices devices, each created, updated or deleted as its
// importMode says. A request that is malformed (not an array, an element
// without id, an id twice, an unknown importMode) changes nothing and is a
// 400 naming the element. Otherwise every device is applied on its own:
// the answer lists the ones that failed, with IoT Hub's error code, and is
// 200 when none did, else 400, as IoT Hub.
func (h *Hub) bulkDevices(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireRight(p, RegistryWrite); err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		return errorf(http.StatusBadRequest, "ArgumentInvalid", "bulk registry operation: the body must be a JSON array of devices ({\"id\", \"importMode\", …}): %v", err)
	}
	switch {
	case len(raws) == 0:
		return errorf(http.StatusBadRequest, "ArgumentInvalid", "bulk registry operation: the array of devices is empty")
	case len(raws) > MaxBulkDevices:
		return errorf(http.StatusRequestEntityTooLarge, "TooManyDevices", "bulk registry operation: %d devices, at most %d per request (IoT Hub's limit): split the list", len(raws), MaxBulkDevices)
	}
	items := make([]importDevice, len(raws))
	modes := make([]string, len(raws))
	seen := map[string]int{}
	for i, raw := range raws {
		it := &items[i]
		if err := json.Unmarshal(raw, it); err != nil {
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "bulk registry operation: [%d]: %v", i, err)
		}
		if err := identity.ValidateDeviceID(it.ID); err != nil {
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "bulk registry operation: [%d].id: %v", i, err)
		}
		if j, dup := seen[it.ID]; dup {
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "bulk registry operation: [%d].id: device %q is already at [%d]; a device may appear once per request", i, it.ID, j)
		}
		seen[it.ID] = i
		if modes[i], err = registry.ParseImportMode(it.ImportMode); err != nil {
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "bulk registry operation: [%d].importMode: %v", i, err)
		}
		switch {
		case it.ModuleID != "":
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "bulk registry operation: [%d].moduleId: outpost imports devices only: create modules with PUT /devices/{id}/modules/{mid}", i)
		case len(it.Tags) > 0 && string(it.Tags) != "null", len(it.Properties) > 0 && string(it.Properties) != "null":
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "bulk registry operation: [%d]: tags and properties are not imported by outpost: write the twin with PATCH /twins/{id}", i)
		}
	}
	// Each device stands alone, so they are written side by side: the
	// store's group commit then makes one durable write of many devices'
	// records where one at a time waits for a sync each.
	errs := make([]error, len(items))
	inParallel(len(items), bulkWriters, func(i int) {
		it := items[i]
		d := deviceBody{Status: it.Status, StatusReason: it.StatusReason, Authentication: it.Authentication, Capabilities: it.Capabilities,
			DeviceScope: it.DeviceScope, ParentScopes: it.ParentScopes}.device(it.ID)
		_, errs[i] = h.reg.Import(d, modes[i], it.ETag)
	})
	res := bulkResult{IsSuccessful: true, Errors: []bulkError{}, Warnings: []bulkWarning{}}
	for i, it := range items {
		if err := errs[i]; err != nil {
			ae := toAPIError(err, "Device")
			if ae.status >= 500 {
				h.log.Error("bulk registry operation failed", "device", it.ID, "err", err)
			}
			res.IsSuccessful = false
			res.Errors = append(res.Errors, bulkError{DeviceID: it.ID, ErrorCode: ae.code, ErrorStatus: fmt.Sprintf("%s: %s", modes[i], ae.msg)})
			continue
		}
		if modes[i] == registry.ImportDelete || modes[i] == registry.ImportDeleteIfMatchETag {
			h.presence.forget(it.ID)
		}
	}
	status := http.StatusOK
	if !res.IsSuccessful {
		status = http.StatusBadRequest
	}
	writeJSON(w, status, res)
	return nil
}

// bulkWriters is how many devices of a bulk registry operation are written
// at once.
const bulkWriters = 16
