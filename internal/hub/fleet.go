package hub

import (
	"errors"
	"net/http"
	"strconv"
	"sync"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/registry"
)

// maxDevicePage is the largest page of GET /devices and of the fleet (IoT
// Hub's).
const maxDevicePage = 1000

// devicePage reads the page of devices that r asks for (top, default and
// at most maxDevicePage; x-ms-continuation, the id of the last device of
// the page before) and sets the answer's headers: x-ms-continuation for
// the next page, and the change stream's cursor from before the read
// (hubapi.ChangesCursorHeader). The registry reads the page from the
// store's sorted keys: a page costs its devices, whatever the fleet's size.
func (h *Hub) devicePage(w http.ResponseWriter, r *http.Request) ([]registry.Device, error) {
	top := maxDevicePage
	if s := r.URL.Query().Get("top"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, errorf(http.StatusBadRequest, "ArgumentInvalid", "top=%q: want a positive whole number", s)
		}
		top = min(n, maxDevicePage)
	}
	cursor := h.changes.current()
	devices, next, err := h.reg.ListDevices(r.Header.Get("x-ms-continuation"), top)
	if err != nil {
		return nil, err
	}
	if next != "" {
		w.Header().Set("x-ms-continuation", next)
	}
	w.Header().Set(hubapi.ChangesCursorHeader, cursor)
	return devices, nil
}

// listFleet serves GET /outpost/v1/fleet (hubapi.FleetPath): a page of
// devices as devicePage reads it, or with id=… (repeated, at most
// maxDevicePage) those devices that exist, each with its connection state,
// module count and deployment report.
func (h *Hub) listFleet(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireRight(p, RegistryRead); err != nil {
		return err
	}
	var devices []registry.Device
	if ids, ok := r.URL.Query()["id"]; ok {
		if len(ids) > maxDevicePage {
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "%d ids: ask for at most %d devices at once", len(ids), maxDevicePage)
		}
		w.Header().Set(hubapi.ChangesCursorHeader, h.changes.current())
		for _, id := range ids {
			d, err := h.reg.GetDevice(id)
			if errors.Is(err, registry.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			devices = append(devices, d)
		}
	} else {
		var err error
		if devices, err = h.devicePage(w, r); err != nil {
			return err
		}
	}
	out := make([]hubapi.FleetDevice, len(devices))
	errs := make([]error, len(devices))
	// Each device's summary is two reads of the store: on etcd, network
	// round trips, so that a page reads fleetReaders devices at a time.
	inParallel(len(devices), fleetReaders, func(i int) {
		h.presence.device(&devices[i])
		out[i], errs[i] = h.reg.FleetDevice(devices[i])
	})
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// fleetReaders is how many devices of a fleet page are read at once.
const fleetReaders = 16

// inParallel calls f(i) for every i in [0, n), from at most workers
// goroutines at once, and returns when all calls have.
func inParallel(n, workers int, f func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
