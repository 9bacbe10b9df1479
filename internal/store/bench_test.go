package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/outpost-edge/outpost/internal/cputime"
)

// benchValue is a JSON value of about 200 bytes.
var benchValue = []byte(`{"properties":{"desired":{"interval":5,"threshold":21.5,"mode":"eco"},` +
	`"reported":{"interval":5,"lastSeen":"2025-01-01T00:00:00Z","fw":"1.2.3"}},"tags":{"site":"plant-7"}}`)

var fixtures struct {
	sync.Mutex
	root string
	dirs map[int]string
}

// fixtureKey is the key of record i of a fixture: four module twins per device.
func fixtureKey(i int) string {
	return fmt.Sprintf("devices/dev%05d/modules/m%d/twin", i/4, i%4)
}

// fixtureDir returns a data dir holding n records, built once per run of the test binary
// by writing record files directly, without fsync. Benchmarks may change its records.
func fixtureDir(b *testing.B, n int) string {
	b.Helper()
	fixtures.Lock()
	defer fixtures.Unlock()
	if dir, ok := fixtures.dirs[n]; ok {
		return dir
	}
	if fixtures.root == "" {
		root, err := os.MkdirTemp("", "outpost-store-bench-")
		if err != nil {
			b.Fatal(err)
		}
		fixtures.root, fixtures.dirs = root, map[int]string{}
	}
	dir := filepath.Join(fixtures.root, strconv.Itoa(n))
	recDir := filepath.Join(dir, recordsName)
	if err := os.MkdirAll(recDir, 0o700); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				key := fixtureKey(i)
				data := encodeRecord(key, int64(i+1), benchValue)
				if err := os.WriteFile(filepath.Join(recDir, fileName(key)), data, 0o600); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, revisionName), fmt.Appendf(nil, `{"format":1,"revision":%d}`, n), 0o600); err != nil {
		b.Fatal(err)
	}
	syncAll()
	fixtures.dirs[n] = dir
	return dir
}

func removeFixtures() {
	if fixtures.root != "" {
		os.RemoveAll(fixtures.root)
	}
}

func reportRate(b *testing.B, unit string) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
}

// benchPut runs b.N durable Puts with the given number of writers; each writer updates
// its own keys (16 of them) in turn, so after the first round every Put replaces a record.
//
// It runs with the Ps a process on this store is given (UseProcs).
func benchPut(b *testing.B, writers int) {
	defer UseProcs()()
	s := openT(b, b.TempDir())
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu := cputime.Self()
	for w := range writers {
		wg.Go(func() {
			for i := 0; next.Add(1) <= int64(b.N); i++ {
				if _, err := s.Put(fmt.Sprintf("w%d/k%d", w, i%16), benchValue, Any); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	reportRate(b, "writes/s")
	b.ReportMetric(float64((cputime.Self()-cpu).Microseconds())/float64(b.N), "cpu-us/write")
}

func BenchmarkPut1Writer(b *testing.B)   { benchPut(b, 1) }
func BenchmarkPut16Writers(b *testing.B) { benchPut(b, 16) }

// BenchmarkCreate1Writer creates new records only: no replaced file to reuse, the worst case.
func BenchmarkCreate1Writer(b *testing.B) {
	s := openT(b, b.TempDir())
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.Put("new/"+strconv.Itoa(i), benchValue, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportRate(b, "writes/s")
}

// BenchmarkOutbox creates a record and deletes the oldest one, as a queue does.
// BenchmarkTxnCreate2 creates two new records in one Txn (a device and its agent
// module): compare with two BenchmarkCreate1Writer writes.
func BenchmarkTxnCreate2(b *testing.B) {
	s := openT(b, b.TempDir())
	b.ResetTimer()
	for i := range b.N {
		id := strconv.Itoa(i)
		if _, err := s.Txn(PutOp("devices/"+id, benchValue, 0), PutOp("modules/"+id+"/$edgeAgent", benchValue, 0)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportRate(b, "txns/s")
}

func BenchmarkOutbox(b *testing.B) {
	s := openT(b, b.TempDir())
	const depth = 32
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.Put(fmt.Sprintf("outbox/%012d", i), benchValue, 0); err != nil {
			b.Fatal(err)
		}
		if i >= depth {
			if err := s.Delete(fmt.Sprintf("outbox/%012d", i-depth), Any); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	reportRate(b, "put+delete/s")
}

func benchPutWith(b *testing.B, n int) {
	s := openT(b, fixtureDir(b, n))
	b.ResetTimer()
	for i := range b.N {
		key := fixtureKey(int(uint64(i) * 2654435761 % uint64(n))) // spread over the records
		if _, err := s.Put(key, benchValue, Any); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportRate(b, "writes/s")
}

func BenchmarkPutWith1kRecords(b *testing.B)   { benchPutWith(b, 1000) }
func BenchmarkPutWith100kRecords(b *testing.B) { benchPutWith(b, 100_000) }

func BenchmarkGet(b *testing.B) {
	const n = 1000
	s := openT(b, fixtureDir(b, n))
	var seed atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := seed.Add(1) * 7919
		for pb.Next() {
			i++
			if _, err := s.Get(fixtureKey(int(i % n))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportRate(b, "reads/s")
}

// BenchmarkListDevice lists one device's 4 module twins among 100k records.
func BenchmarkListDevice(b *testing.B) {
	const n = 100_000
	s := openT(b, fixtureDir(b, n))
	b.ResetTimer()
	for i := range b.N {
		recs, err := s.List(fmt.Sprintf("devices/dev%05d/", i%(n/4)))
		if err != nil || len(recs) != 4 {
			b.Fatal(len(recs), err)
		}
	}
	b.StopTimer()
	reportRate(b, "lists/s")
}

// BenchmarkListAll1k lists every record of a store of 1000.
func BenchmarkListAll1k(b *testing.B) {
	s := openT(b, fixtureDir(b, 1000))
	b.ResetTimer()
	for range b.N {
		if recs, err := s.List(""); err != nil || len(recs) != 1000 {
			b.Fatal(len(recs), err)
		}
	}
}

// BenchmarkOpen100k opens (and closes) a store of 100k records; the files are in the page
// cache, as they are when a daemon restarts.
func BenchmarkOpen100k(b *testing.B) {
	dir := fixtureDir(b, 100_000)
	b.ResetTimer()
	for range b.N {
		s, err := Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/open")
}

// BenchmarkBaselineAtomicWrite is the textbook atomic write of a 200-byte file, without the
// store: temp file, write, fsync, rename, directory fsync. It tells how fast this disk is.
func BenchmarkBaselineAtomicWrite(b *testing.B) {
	dir := b.TempDir()
	d, err := os.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	b.ResetTimer()
	for i := range b.N {
		f, err := os.CreateTemp(dir, "*.tmp")
		if err != nil {
			b.Fatal(err)
		}
		_, err = f.Write(benchValue)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), filepath.Join(dir, "k"+strconv.Itoa(i%16)))
		}
		if err == nil {
			err = syncDir(d)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportRate(b, "writes/s")
}
