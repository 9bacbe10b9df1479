package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/agent"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/runtime"
)

// The direct methods the daemon answers as $edgeAgent, with IoT Edge's
// names and payloads (names are matched without regard to case, as IoT
// Edge does):
//
//	ping                                         → 200, null
//	RestartModule {"schemaVersion":"1.0","id":M} → 200, null
//	GetModuleLogs {"schemaVersion":"1.0","items":[{"id":REGEX,"filter":{"tail":N,"since":S,"regex":R}}],
//	               "encoding":"none","contentType":"text"}
//	                                             → 200, [{"id":M,"payload":TEXT}]
//
// A bad payload is 400 with {"message": …}, an unknown module 404, an
// unknown method 501.
func (d *Daemon) agentMethod(ctx context.Context, c hubapi.MethodCall) hubapi.MethodResponse {
	switch {
	case strings.EqualFold(c.Method, "ping"):
		return hubapi.MethodResponse{Status: 200, Payload: json.RawMessage("null")}
	case strings.EqualFold(c.Method, "RestartModule"):
		return d.restartModuleMethod(ctx, c.Payload)
	case strings.EqualFold(c.Method, "GetModuleLogs"):
		return d.moduleLogsMethod(ctx, c.Payload)
	}
	return errorResponse(501, "$edgeAgent has no method %q: it answers ping, RestartModule and GetModuleLogs", c.Method)
}

// errorResponse is a method answer with IoT Edge's error payload.
func errorResponse(status int, format string, a ...any) hubapi.MethodResponse {
	b, _ := json.Marshal(map[string]string{"message": fmt.Sprintf(format, a...)})
	return hubapi.MethodResponse{Status: status, Payload: b}
}

// decodePayload decodes a method payload strictly, naming what is wrong.
func decodePayload(method string, payload []byte, v any) error {
	if len(payload) == 0 || string(payload) == "null" {
		return fmt.Errorf("%s: the payload is missing: send a JSON object with schemaVersion \"1.0\"", method)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return fmt.Errorf("%s: payload.%s: want a %s, got a JSON %s", method, ute.Field, ute.Type, ute.Value)
		}
		return fmt.Errorf("%s: payload: %v", method, err)
	}
	return nil
}

func checkSchemaVersion(method, v string) error {
	if v != "" && v != "1.0" && !strings.HasPrefix(v, "1.") {
		return fmt.Errorf("%s: payload.schemaVersion %q is not supported: use \"1.0\"", method, v)
	}
	return nil
}

func (d *Daemon) restartModuleMethod(ctx context.Context, payload []byte) hubapi.MethodResponse {
	var req struct {
		SchemaVersion string `json:"schemaVersion"`
		ID            string `json:"id"`
	}
	if err := decodePayload("RestartModule", payload, &req); err != nil {
		return errorResponse(400, "%v", err)
	}
	if err := checkSchemaVersion("RestartModule", req.SchemaVersion); err != nil {
		return errorResponse(400, "%v", err)
	}
	if req.ID == "" {
		return errorResponse(400, "RestartModule: payload.id is missing: name the module to restart")
	}
	if strings.HasPrefix(req.ID, "$") || req.ID == "edgeAgent" || req.ID == "edgeHub" {
		return errorResponse(400, "RestartModule: %s is part of the daemon, not a module it runs: restart the daemon on the device (systemctl restart outpost)", req.ID)
	}
	if err := d.agent.Restart(ctx, req.ID); err != nil {
		if errors.Is(err, agent.ErrUnknownModule) {
			return errorResponse(404, "RestartModule: no module %q in the device's deployment", req.ID)
		}
		return errorResponse(500, "RestartModule: %v", err)
	}
	d.log.Info("module restarted by a direct method", "module", req.ID)
	return hubapi.MethodResponse{Status: 200, Payload: json.RawMessage("null")}
}

// logFilter is IoT Edge's filter of GetModuleLogs.
type logFilter struct {
	Tail     *int            `json:"tail"`
	Since    json.RawMessage `json:"since"`
	Until    json.RawMessage `json:"until"`
	LogLevel *int            `json:"loglevel"`
	Regex    string          `json:"regex"`
}

// maxLogsPayload is what GetModuleLogs returns at most: the answer must fit
// a direct method's 128 KiB, with room for its JSON.
const maxLogsPayload = hubapi.MaxMethodPayload - 4096

func (d *Daemon) moduleLogsMethod(ctx context.Context, payload []byte) hubapi.MethodResponse {
	var req struct {
		SchemaVersion string `json:"schemaVersion"`
		Items         []struct {
			ID     string    `json:"id"`
			Filter logFilter `json:"filter"`
		} `json:"items"`
		Encoding    string `json:"encoding"`
		ContentType string `json:"contentType"`
	}
	if err := decodePayload("GetModuleLogs", payload, &req); err != nil {
		return errorResponse(400, "%v", err)
	}
	if err := checkSchemaVersion("GetModuleLogs", req.SchemaVersion); err != nil {
		return errorResponse(400, "%v", err)
	}
	if req.Encoding != "" && req.Encoding != "none" {
		return errorResponse(400, "GetModuleLogs: payload.encoding %q is not supported: use \"none\"", req.Encoding)
	}
	if req.ContentType != "" && req.ContentType != "text" {
		return errorResponse(400, "GetModuleLogs: payload.contentType %q is not supported: use \"text\"", req.ContentType)
	}
	if len(req.Items) == 0 {
		return errorResponse(400, "GetModuleLogs: payload.items is empty: add {\"id\": \"module name or regex\", \"filter\": {\"tail\": 100}}")
	}
	type logsResponse struct {
		ID      string `json:"id"`
		Payload string `json:"payload"`
	}
	out := []logsResponse{}
	mods := d.agent.Modules()
	left := maxLogsPayload
	for i, it := range req.Items {
		at := fmt.Sprintf("payload.items[%d]", i)
		if it.ID == "" {
			return errorResponse(400, "GetModuleLogs: %s.id is missing: a module name, or a regular expression over module names", at)
		}
		re, err := regexp.Compile(it.ID)
		if err != nil {
			return errorResponse(400, "GetModuleLogs: %s.id %q is not a regular expression: %v", at, it.ID, err)
		}
		opts, lineRE, err := logOptions(at+".filter", it.Filter, time.Now())
		if err != nil {
			return errorResponse(400, "GetModuleLogs: %v", err)
		}
		matched := false
		for _, m := range mods {
			if !re.MatchString(m.Name) {
				continue
			}
			matched = true
			text, err := d.readLogs(ctx, m.Name, opts, lineRE, left)
			if err != nil {
				return errorResponse(500, "GetModuleLogs: logs of %s: %v", m.Name, err)
			}
			left -= len(text)
			out = append(out, logsResponse{ID: m.Name, Payload: text})
		}
		if !matched {
			return errorResponse(404, "GetModuleLogs: %s.id %q matches no module in the device's deployment", at, it.ID)
		}
	}
	b, _ := json.Marshal(out)
	return hubapi.MethodResponse{Status: 200, Payload: b}
}

// logOptions reads a GetModuleLogs filter.
func logOptions(at string, f logFilter, now time.Time) (runtime.LogOptions, *regexp.Regexp, error) {
	var opts runtime.LogOptions
	if f.Tail != nil {
		if *f.Tail < 0 {
			return opts, nil, fmt.Errorf("%s.tail: %d is negative: want a number of lines", at, *f.Tail)
		}
		opts.Tail = *f.Tail
	}
	if len(f.Since) > 0 && string(f.Since) != "null" {
		t, err := parseLogTime(f.Since, now)
		if err != nil {
			return opts, nil, fmt.Errorf("%s.since: %v", at, err)
		}
		opts.Since = t
	}
	if len(f.Until) > 0 && string(f.Until) != "null" {
		return opts, nil, fmt.Errorf("%s.until is not supported here: leave it out (tail and since are)", at)
	}
	if f.LogLevel != nil {
		return opts, nil, fmt.Errorf("%s.loglevel is not supported here: leave it out, or filter with regex", at)
	}
	var re *regexp.Regexp
	if f.Regex != "" {
		var err error
		if re, err = regexp.Compile(f.Regex); err != nil {
			return opts, nil, fmt.Errorf("%s.regex %q is not a regular expression: %v", at, f.Regex, err)
		}
	}
	return opts, re, nil
}

// parseLogTime reads IoT Edge's since: a UNIX time (number or string), an
// RFC 3339 time, or a duration before now ("90m", "1d", "2 days 3 hours").
func parseLogTime(raw json.RawMessage, now time.Time) (time.Time, error) {
	var n float64
	if json.Unmarshal(raw, &n) == nil {
		return time.Unix(int64(n), 0), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return time.Time{}, fmt.Errorf("want a UNIX time, an RFC 3339 time or a duration such as \"90m\", got %s", raw)
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(v, 0), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, ok := parseLongDuration(s); ok {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q: want a UNIX time, an RFC 3339 time or a duration such as \"90m\", \"1d\" or \"2 days 3 hours\"", s)
}

// parseLongDuration reads Go durations plus days and IoT Edge's spelt-out
// units: "1d", "2 days 3 hours 2 minutes".
func parseLongDuration(s string) (time.Duration, bool) {
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return d, true
	}
	units := map[string]time.Duration{
		"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
		"h": time.Hour, "hour": time.Hour, "hours": time.Hour,
		"m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute,
		"s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
	}
	re := regexp.MustCompile(`^\s*(\d+)\s*([a-z]+)\s*`)
	var total time.Duration
	rest := strings.ToLower(s)
	for rest != "" {
		m := re.FindStringSubmatch(rest)
		if m == nil {
			return 0, false
		}
		u, ok := units[m[2]]
		if !ok {
			return 0, false
		}
		n, _ := strconv.Atoi(m[1])
		total += time.Duration(n) * u
		rest = rest[len(m[0]):]
	}
	return total, total > 0
}

// readLogs reads a module's logs, keeping lines lineRE matches (all when
// nil) and, past limit bytes, the last ones.
func (d *Daemon) readLogs(ctx context.Context, module string, opts runtime.LogOptions, lineRE *regexp.Regexp, limit int) (string, error) {
	rc, err := d.agent.Logs(ctx, module, opts)
	if errors.Is(err, runtime.ErrNotFound) {
		return "", nil // no instance yet: no logs
	}
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return "", err
	}
	if lineRE != nil {
		var keep []byte
		for line := range bytes.SplitAfterSeq(b, []byte("\n")) {
			if lineRE.Match(line) {
				keep = append(keep, line...)
			}
		}
		b = keep
	}
	if limit <= 0 {
		return "", nil
	}
	if len(b) > limit {
		b = b[len(b)-limit:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b), nil
}
