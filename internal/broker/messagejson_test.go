package broker

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
)

// FuzzMessageJSON: the queue's JSON of a module's message is byte for byte
// json.Marshal's, whatever the strings hold (escapes, HTML characters,
// U+2028, invalid UTF-8) and whether the body is empty or absent.
func FuzzMessageJSON(f *testing.F) {
	f.Add("d", "a", "out1", "$.mid", "m1", "temp", "35", []byte(`{"t":35}`), int64(1764700000123456789))
	f.Add("d", "", "", "", "", "", "", []byte(nil), int64(0))
	f.Add("d\"\\", "m<>&", "o\u2028\u2029", "k\x00\x1f\b\f\n\r\t", "\xff\xfe", "é漢", "x\x7fy", []byte{}, int64(-1))
	f.Fuzz(func(t *testing.T, device, module, output, sysKey, sysValue, key, value string, body []byte, nanos int64) {
		msg := hubapi.Message{DeviceID: device, ModuleID: module, OutputName: output, EnqueuedTime: time.Unix(0, nanos).UTC(), Body: body}
		if sysKey != "" {
			msg.SystemProperties = map[string]string{sysKey: sysValue, "$.on": output}
		}
		if key != "" {
			msg.Properties = map[string]string{key: value, key + "2": value + sysValue}
		}
		want, err := json.Marshal(msg)
		if err != nil {
			t.Skip(err) // a time json.Marshal refuses; a module's message has now's
		}
		if got := appendMessageJSON(nil, &msg); !bytes.Equal(got, want) {
			t.Fatalf("appendMessageJSON:\n%s\njson.Marshal:\n%s", got, want)
		}
	})
}
