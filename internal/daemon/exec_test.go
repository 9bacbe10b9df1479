//go:build unix

package daemon

import (
	"encoding/json"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestExecConfig: every setting of Config that `outpost daemon` can fill reaches the
// daemon binary unchanged through the pipe (a field added to Config later too: each
// one of a plain kind is filled here by reflection), and the daemon binary refuses to
// run without it.
func TestExecConfig(t *testing.T) {
	var cfg Config
	v := reflect.ValueOf(&cfg).Elem()
	for i := range v.NumField() {
		f, sf := v.Field(i), v.Type().Field(i)
		if sf.Tag.Get("json") == "-" {
			continue
		}
		switch {
		case f.Type() == reflect.TypeFor[time.Duration]():
			f.SetInt(int64(i+1) * int64(time.Second))
		case f.Kind() == reflect.String:
			f.SetString(sf.Name + "-value")
		case f.Kind() == reflect.Bool:
			f.SetBool(true)
		case f.Kind() >= reflect.Int && f.Kind() <= reflect.Int64:
			f.SetInt(int64(i + 1))
		default:
			t.Fatalf("Config.%s (%s): give it a json:\"-\" tag if the daemon binary sets it itself, else fill it here", sf.Name, f.Type())
		}
	}
	b, err := json.Marshal(execConfig{Config: cfg, LogLevel: slog.LevelDebug})
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	w.Close()
	// readExecConfig closes the descriptor it reads, as the daemon binary does: hand it a
	// copy, so that r's finalizer does not close the number again once another file of
	// this test process reuses it.
	fd, err := syscall.Dup(int(r.Fd()))
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	got, level, err := readExecConfig([]string{configFDFlag, strconv.Itoa(fd)})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cfg) || level != slog.LevelDebug {
		t.Errorf("through the pipe:\n got %+v %v\nwant %+v %v", got, level, cfg, slog.LevelDebug)
	}

	for _, args := range [][]string{nil, {"--data", "/x"}, {configFDFlag, "x"}, {configFDFlag, "1"}} {
		if _, _, err := readExecConfig(args); err == nil || !strings.Contains(err.Error(), configFDFlag) {
			t.Errorf("readExecConfig(%q) = %v, want an error naming %s", args, err, configFDFlag)
		}
	}
}
