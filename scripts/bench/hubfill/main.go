// Command hubfill fills a hub data dir with devices, modules and module
// twins, for the hub benchmarks in scripts/bench/hub.sh.
//
//	go run ./scripts/bench/hubfill -data DIR -devices 10000 -modules 5
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

func main() {
	data := flag.String("data", "", "the hub's data dir")
	devices := flag.Int("devices", 10000, "devices to create")
	modules := flag.Int("modules", 5, "modules (each with a twin) per device")
	workers := flag.Int("workers", 32, "concurrent writers")
	flag.Parse()
	if *data == "" {
		log.Fatal("hubfill: -data is required")
	}
	if err := os.MkdirAll(*data, 0o700); err != nil {
		log.Fatal(err)
	}
	st, err := store.Open(filepath.Join(*data, "store"))
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	reg := registry.New(st)

	start := time.Now()
	var done atomic.Int64
	ids := make(chan int)
	var wg sync.WaitGroup
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				if err := fill(reg, i, *modules); err != nil {
					log.Fatal(err)
				}
				if n := done.Add(1); n%1000 == 0 {
					fmt.Fprintf(os.Stderr, "%d devices (%.0f/s)\n", n, float64(n)/time.Since(start).Seconds())
				}
			}
		}()
	}
	for i := range *devices {
		ids <- i
	}
	close(ids)
	wg.Wait()
	fmt.Fprintf(os.Stderr, "filled %d devices × %d module twins in %v\n", *devices, *modules, time.Since(start).Round(time.Millisecond))
}

func fill(reg *registry.Registry, i, modules int) error {
	id := fmt.Sprintf("device-%05d", i)
	if _, err := reg.CreateDevice(registry.Device{DeviceID: id}); err != nil {
		return err
	}
	now := time.Now().UTC()
	for m := range modules {
		mid := fmt.Sprintf("module-%d", m)
		if _, err := reg.CreateModule(registry.Module{DeviceID: id, ModuleID: mid}); err != nil {
			return err
		}
		if _, err := reg.UpdateTwin(id, mid, "", func(t *twin.Twin) (bool, error) {
			if _, err := t.PatchDesired([]byte(`{"interval":5,"units":"C","alerts":{"high":30,"low":-5}}`), now); err != nil {
				return false, err
			}
			return t.PatchReported([]byte(`{"temperature":21.5,"firmware":"1.0.0"}`), now)
		}); err != nil {
			return err
		}
	}
	return nil
}
