// Command hubfill fills a hub data dir with devices, modules and module
// twins, for the hub benchmarks in scripts/bench/hub.sh.
//
//	go run ./scripts/bench/hubfill -data DIR -devices 10000 -modules 5
//
// With -configs N it tags the module twins and adds N automatic module
// configurations (moduleContent) over them: the first targets most module
// twins (every module but the last of each device), the second a few (those
// of one device in a hundred), the third none; more repeat the mix with other
// priorities.
//
// With -report, in a data dir filled before (the hub stopped), each module
// twin reports a new property: their decisions then stand on twins that
// changed since.
//
// With -etcd it fills an etcd prefix instead, for the replica benchmarks:
// one device is made through the registry, then its records are copied
// under every other device id in transactions of up to 100 records (the
// registry's one transaction per write would take hours for 100,000
// devices).
//
//	go run ./scripts/bench/hubfill -etcd http://127.0.0.1:2379 -devices 100000 -modules 5
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/store/etcdstore"
	"github.com/outpost-edge/outpost/internal/twin"
)

func main() {
	data := flag.String("data", "", "the hub's data dir")
	devices := flag.Int("devices", 10000, "devices to create")
	modules := flag.Int("modules", 5, "modules (each with a twin) per device")
	workers := flag.Int("workers", 32, "concurrent writers")
	endpoints := flag.String("etcd", "", "etcd endpoints (URL,…): fill etcd instead of -data")
	prefix := flag.String("etcd-prefix", etcdstore.DefaultPrefix, "the hub's etcd key prefix")
	configs := flag.Int("configs", 0, "automatic module configurations to add (module twins get tags they target)")
	report := flag.Bool("report", false, "in a filled data dir: each module twin reports a property (nothing else is done)")
	flag.Parse()
	tagged = *configs > 0
	if *endpoints != "" {
		if err := fillEtcd(strings.Split(*endpoints, ","), *prefix, *devices, *modules, *workers); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *data == "" {
		log.Fatal("hubfill: give -data DIR (a hub data dir) or -etcd URL,… (etcd endpoints)")
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
	if *report {
		if err := reportAll(reg, *devices, *modules, *workers); err != nil {
			log.Fatal(err)
		}
		return
	}

	start := time.Now()
	var done atomic.Int64
	if err := eachDevice(*devices, *workers, func(i int) error {
		if err := fill(reg, i, *modules); err != nil {
			return err
		}
		if n := done.Add(1); n%1000 == 0 {
			fmt.Fprintf(os.Stderr, "%d devices (%.0f/s)\n", n, float64(n)/time.Since(start).Seconds())
		}
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	if err := addConfigs(reg, *configs, *modules); err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "filled %d devices × %d module twins, %d module configurations in %v\n", *devices, *modules, *configs, time.Since(start).Round(time.Millisecond))
}

// eachDevice runs work for each device index on workers goroutines and
// returns the first error.
func eachDevice(devices, workers int, work func(i int) error) error {
	var g errgroup.Group
	g.SetLimit(workers)
	for i := range devices {
		g.Go(func() error { return work(i) })
	}
	return g.Wait()
}

// addConfigs adds n automatic module configurations: most, few, none.
func addConfigs(reg *registry.Registry, n, modules int) error {
	conds := []string{
		fmt.Sprintf("tags.role = 'sensor' AND moduleId != 'module-%d'", modules-1),
		"tags.ring = 'canary' AND properties.reported.firmware = '1.0.0'",
		"tags.role = 'gateway'",
	}
	for i := range n {
		c := registry.Configuration{
			ID:              fmt.Sprintf("bench-modules-%d", i),
			Priority:        int64(10*(i%len(conds)) + i/len(conds)),
			TargetCondition: "FROM devices.modules WHERE " + conds[i%len(conds)],
			Content:         hubapi.ConfigurationContent{ModuleContent: json.RawMessage(fmt.Sprintf(`{"properties.desired.bench%d": {"interval": %d}}`, i, 10+i))},
		}
		if _, err := reg.CreateConfiguration(c); err != nil {
			return err
		}
	}
	return nil
}

// reportAll has each module twin report a new temperature, as modules do
// while the hub is down.
func reportAll(reg *registry.Registry, devices, modules, workers int) error {
	start := time.Now()
	if err := eachDevice(devices, workers, func(i int) error {
		for m := range modules {
			if _, err := reg.UpdateTwin(fmt.Sprintf("device-%05d", i), fmt.Sprintf("module-%d", m), "", func(t *twin.Twin) (bool, error) {
				return t.PatchReported([]byte(fmt.Sprintf(`{"temperature":%d}`, time.Now().UnixNano()%1000)), time.Now())
			}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%d devices × %d module twins reported a property in %v\n", devices, modules, time.Since(start).Round(time.Millisecond))
	return nil
}

// tagged: module twins get tags for the module configurations (-configs).
var tagged bool

// fillEtcd fills etcd with devices copies of one device made through the
// registry in a scratch file store.
func fillEtcd(endpoints []string, prefix string, devices, modules, workers int) error {
	dir, err := os.MkdirTemp("", "hubfill-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tmpl, err := store.Open(dir)
	if err != nil {
		return err
	}
	defer tmpl.Close()
	if err := fill(registry.New(tmpl), 0, modules); err != nil {
		return err
	}
	recs, err := tmpl.List("")
	if err != nil {
		return err
	}
	st, err := etcdstore.Open(etcdstore.Config{Endpoints: endpoints, Prefix: prefix, RequestTimeout: time.Minute})
	if err != nil {
		return err
	}
	defer st.Close()
	const tmplID = "device-00000"
	start := time.Now()
	var done atomic.Int64
	ids := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ops []store.Op
			flush := func() error {
				if len(ops) == 0 {
					return nil
				}
				_, err := st.Txn(ops...)
				ops = ops[:0]
				return err
			}
			for i := range ids {
				id := fmt.Sprintf("device-%05d", i)
				for _, r := range recs {
					ops = append(ops, store.PutOp(strings.ReplaceAll(r.Key, tmplID, id), bytes.ReplaceAll(r.Value, []byte(tmplID), []byte(id)), store.Any))
				}
				if len(ops) > 100-len(recs) {
					if err := flush(); err != nil {
						errs <- err
						return
					}
				}
				if n := done.Add(1); n%10000 == 0 {
					fmt.Fprintf(os.Stderr, "%d devices (%.0f/s)\n", n, float64(n)/time.Since(start).Seconds())
				}
			}
			if err := flush(); err != nil {
				errs <- err
			}
		}()
	}
	for i := range devices {
		select {
		case ids <- i:
		case err := <-errs:
			return err
		}
	}
	close(ids)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	// Made by this registry, the devices have IoT Edge's system module
	// names: the mark a hub writes once it has checked that (internal/hub's
	// systemModulesKey), so that the first replica does not read every device.
	if _, err := st.Put("hub/system-modules", []byte(`{"migrated":true}`), store.Any); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "filled etcd with %d devices × %d module twins (%d records each) in %v\n", devices, modules, len(recs), time.Since(start).Round(time.Millisecond))
	return nil
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
			if tagged {
				ring := "main"
				if i%100 == 0 {
					ring = "canary"
				}
				if _, err := t.PatchTags([]byte(`{"role":"sensor","ring":"`+ring+`"}`), now); err != nil {
					return false, err
				}
			}
			return t.PatchReported([]byte(`{"temperature":21.5,"firmware":"1.0.0"}`), now)
		}); err != nil {
			return err
		}
	}
	return nil
}
