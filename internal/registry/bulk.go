package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Import modes of IoT Hub's bulk registry operations (POST /devices), as
// its SDKs spell them; ParseImportMode matches them without regard to case.
const (
	ImportCreate                    = "create"
	ImportCreateOrUpdate            = "createOrUpdate"
	ImportCreateOrUpdateIfMatchETag = "createOrUpdateIfMatchETag"
	ImportUpdate                    = "update"
	ImportUpdateIfMatchETag         = "updateIfMatchETag"
	ImportDelete                    = "delete"
	ImportDeleteIfMatchETag         = "deleteIfMatchETag"
)

var importModes = []string{
	ImportCreate, ImportCreateOrUpdate, ImportCreateOrUpdateIfMatchETag,
	ImportUpdate, ImportUpdateIfMatchETag, ImportDelete, ImportDeleteIfMatchETag,
}

// ParseImportMode returns the import mode s names ("" is createOrUpdate, as
// IoT Hub's default), or an error that lists the modes outpost knows.
func ParseImportMode(s string) (string, error) {
	if s == "" {
		return ImportCreateOrUpdate, nil
	}
	for _, m := range importModes {
		if strings.EqualFold(s, m) {
			return m, nil
		}
	}
	if strings.HasPrefix(strings.ToLower(s), "updatetwin") {
		return "", fmt.Errorf("%w: importMode %q is not supported by outpost: write the twin with PATCH /twins/{id}", ErrInvalid, s)
	}
	return "", fmt.Errorf("%w: importMode %q is not one of %s", ErrInvalid, s, strings.Join(importModes, ", "))
}

// Import applies one device of a bulk registry operation in mode (from
// ParseImportMode), with etag for the IfMatchETag modes, and returns the
// device written (the zero Device after a delete). Each device of a bulk
// operation stands alone: one that fails changes nothing and does not stop
// the others. A device created with no capabilities is a leaf device, IoT
// Hub's default; an update keeps what it leaves out (see UpdateDevice).
func (r *Registry) Import(d Device, mode, etag string) (Device, error) {
	etag = strings.Trim(etag, `"`)
	created := d
	if created.Capabilities == nil {
		created.Capabilities = &Capabilities{}
	}
	ifMatch := func() error {
		if etag == "" || etag == "*" {
			return fmt.Errorf("%w: importMode %s needs the device's eTag", ErrInvalid, mode)
		}
		return nil
	}
	switch mode {
	case ImportCreate:
		return r.CreateDevice(created)
	case ImportCreateOrUpdate, ImportCreateOrUpdateIfMatchETag:
		out, err := r.CreateDevice(created)
		if !errors.Is(err, ErrExists) {
			return out, err
		}
		if mode == ImportCreateOrUpdate {
			etag = "*"
		} else if err := ifMatch(); err != nil {
			return Device{}, err
		}
		return r.UpdateDevice(d, etag)
	case ImportUpdate:
		return r.UpdateDevice(d, "*")
	case ImportUpdateIfMatchETag:
		if err := ifMatch(); err != nil {
			return Device{}, err
		}
		return r.UpdateDevice(d, etag)
	case ImportDelete:
		return Device{}, r.DeleteDevice(d.DeviceID, "*")
	case ImportDeleteIfMatchETag:
		if err := ifMatch(); err != nil {
			return Device{}, err
		}
		return Device{}, r.DeleteDevice(d.DeviceID, etag)
	}
	return Device{}, fmt.Errorf("%w: importMode %q", ErrInvalid, mode)
}

// Statistics counts the devices of the registry, as IoT Hub's
// GET /statistics/devices answers.
type Statistics struct {
	TotalDeviceCount    int `json:"totalDeviceCount"`
	EnabledDeviceCount  int `json:"enabledDeviceCount"`
	DisabledDeviceCount int `json:"disabledDeviceCount"`
}

// DeviceStatistics counts the devices, enabled and disabled.
func (r *Registry) DeviceStatistics() (Statistics, error) {
	recs, err := r.st.List("devices/")
	if err != nil {
		return Statistics{}, err
	}
	var s Statistics
	for _, rec := range recs {
		var d struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(rec.Value, &d); err != nil {
			return Statistics{}, fmt.Errorf("record %s: %w", rec.Key, err)
		}
		s.TotalDeviceCount++
		if d.Status == "disabled" {
			s.DisabledDeviceCount++
		} else {
			s.EnabledDeviceCount++
		}
	}
	return s, nil
}
