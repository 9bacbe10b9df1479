package twin

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

func appendContent(b []byte, n *node) []byte {
	if !n.isObject() {
		return append(b, n.raw...)
	}
	b = append(b, '{')
	for i, m := range n.members {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, m.key)
		b = append(b, ':')
		b = appendContent(b, m.node)
	}
	return append(b, '}')
}

func appendMeta(b []byte, n *node, withVersion bool) []byte {
	b = append(b, `{"$lastUpdated":`...)
	b = appendString(b, n.updated)
	if withVersion {
		b = append(b, `,"$lastUpdatedVersion":`...)
		b = strconv.AppendInt(b, n.version, 10)
	}
	for _, m := range n.members {
		b = append(b, ',')
		b = appendString(b, m.key)
		b = append(b, ':')
		b = appendMeta(b, m.node, withVersion)
	}
	return append(b, '}')
}

// metaLen is about the length appendMeta writes (at least it, so that one
// allocation holds it).
func metaLen(n *node, withVersion bool) int {
	l := len(`{"$lastUpdated":""}`) + len(n.updated)
	if withVersion {
		l += len(`,"$lastUpdatedVersion":`) + 20
	}
	for _, m := range n.members {
		l += m.klen + 2 + metaLen(m.node, withVersion)
	}
	return l
}

// sectionLen is about the length appendSection writes.
func sectionLen(n *node, withVersion bool) int {
	return n.size + len(`,"$metadata":,"$version":`) + 20 + metaLen(n, withVersion)
}

// propertiesLen is about the length appendProperties writes.
func (t *Twin) propertiesLen() int {
	return len(`{"desired":,"reported":}`) + sectionLen(t.desired, true) + sectionLen(t.reported, false)
}

// appendSection writes content, then $metadata and $version, as IoT Hub does.
func appendSection(b []byte, n *node, version int64, withVersion bool) []byte {
	b = appendContent(b, n)
	b = b[:len(b)-1] // drop '}'
	if len(n.members) > 0 {
		b = append(b, ',')
	}
	b = append(b, `"$metadata":`...)
	b = appendMeta(b, n, withVersion)
	b = append(b, `,"$version":`...)
	b = strconv.AppendInt(b, version, 10)
	return append(b, '}')
}

func (t *Twin) appendProperties(b []byte) []byte {
	b = append(b, `{"desired":`...)
	b = appendSection(b, t.desired, t.desiredVersion, true)
	b = append(b, `,"reported":`...)
	b = appendSection(b, t.reported, t.reportedVersion, false)
	return append(b, '}')
}

// MarshalJSON writes the twin in IoT Hub's shape:
// {"deviceId","moduleId","etag","version","status","tags","properties":{"desired","reported"}}
// with $metadata and $version in each property section. moduleId is left
// out when empty (a device twin). Keys are sorted, so the output is
// deterministic.
func (t *Twin) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 128+len(t.DeviceID)+len(t.ModuleID)+len(t.ETag)+len(t.Status)+t.tags.size+t.propertiesLen())
	b = append(b, `{"deviceId":`...)
	b = appendString(b, t.DeviceID)
	if t.ModuleID != "" {
		b = append(b, `,"moduleId":`...)
		b = appendString(b, t.ModuleID)
	}
	b = append(b, `,"etag":`...)
	b = appendString(b, t.ETag)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, t.Version, 10)
	b = append(b, `,"status":`...)
	b = appendString(b, t.Status)
	b = append(b, `,"tags":`...)
	b = appendContent(b, t.tags)
	b = append(b, `,"properties":`...)
	b = t.appendProperties(b)
	return append(b, '}'), nil
}

type wireTwin struct {
	DeviceID   string          `json:"deviceId"`
	ModuleID   string          `json:"moduleId"`
	ETag       string          `json:"etag"`
	Version    int64           `json:"version"`
	Status     string          `json:"status"`
	Tags       json.RawMessage `json:"tags"`
	Properties struct {
		Desired  json.RawMessage `json:"desired"`
		Reported json.RawMessage `json:"reported"`
	} `json:"properties"`
}

// UnmarshalJSON reads what MarshalJSON writes (the store format). It also
// accepts an IoT Hub twin: other top-level members are ignored, a missing
// section is empty at $version 1, missing metadata is inherited from the
// parent node (0001-01-01T00:00:00Z at a section root) and a missing etag is
// derived from version. Content must obey every limit.
func (t *Twin) UnmarshalJSON(data []byte) error {
	if decodeFast(data, t) == nil {
		return nil
	}
	return t.unmarshalSlow(data)
}

// unmarshalSlow is UnmarshalJSON through encoding/json: it defines what
// UnmarshalJSON accepts and says what is wrong with what it refuses.
func (t *Twin) unmarshalSlow(data []byte) error {
	var w wireTwin
	if err := json.Unmarshal(data, &w); err != nil {
		return &Error{Reason: "invalid twin JSON: " + err.Error()}
	}
	tags, _, err := loadSection(Tags, w.Tags)
	if err != nil {
		return err
	}
	desired, dv, err := loadSection(Desired, w.Properties.Desired)
	if err != nil {
		return err
	}
	reported, rv, err := loadSection(Reported, w.Properties.Reported)
	if err != nil {
		return err
	}
	*t = Twin{
		DeviceID:        w.DeviceID,
		ModuleID:        w.ModuleID,
		ETag:            w.ETag,
		Version:         w.Version,
		Status:          w.Status,
		tags:            tags,
		desired:         desired,
		reported:        reported,
		desiredVersion:  dv,
		reportedVersion: rv,
	}
	if t.ETag == "" {
		t.ETag = ETag(t.Version)
	}
	return nil
}

// loadSection reads a stored section: content plus, for desired and
// reported, $metadata and $version.
func loadSection(s Section, raw json.RawMessage) (*node, int64, error) {
	p := &path{key: s.path()}
	version := int64(1)
	if len(raw) == 0 || string(raw) == "null" {
		return newObject(nil, zeroTime, version), version, nil
	}
	v, err := decodeAtSlow(raw, p)
	if err != nil {
		return nil, 0, err
	}
	content, ok := v.(map[string]any)
	if !ok {
		return nil, 0, p.errorf("must be a JSON object, not " + kindOf(v))
	}
	var meta map[string]any
	if s != Tags {
		if mv, ok := content["$metadata"]; ok {
			if meta, ok = mv.(map[string]any); !ok {
				return nil, 0, (&path{parent: p, key: "$metadata"}).errorf("must be a JSON object")
			}
			delete(content, "$metadata")
		}
		if vv, ok := content["$version"]; ok {
			num, ok := vv.(json.Number)
			if ok {
				version, err = num.Int64()
			}
			if !ok || err != nil || version < 0 {
				return nil, 0, (&path{parent: p, key: "$version"}).errorf("must be a non-negative integer")
			}
			delete(content, "$version")
		}
	}
	withVersion := s == Desired
	var inherited int64
	if withVersion {
		inherited = version
	}
	n, err := load(content, meta, p, 0, zeroTime, inherited, withVersion)
	if err != nil {
		return nil, 0, err
	}
	if n.size > s.limit() {
		return nil, 0, p.errorf(fmt.Sprintf("size %d bytes exceeds %d", n.size, s.limit()))
	}
	return n, version, nil
}

// load builds the object content at path p, depth d, with its metadata from
// meta; metadata missing there is inherited.
func load(content, meta map[string]any, p *path, d int, updated string, version int64, withVersion bool) (*node, error) {
	updated, version, err := readMeta(meta, p, updated, version, withVersion)
	if err != nil {
		return nil, err
	}
	for _, k := range slices.Sorted(maps.Keys(meta)) {
		if strings.HasPrefix(k, "$") {
			continue
		}
		if _, ok := content[k]; !ok {
			return nil, (&path{parent: p, key: "$metadata"}).errorf(fmt.Sprintf("metadata for missing member %q", k))
		}
	}
	members := make([]member, 0, len(content))
	for _, k := range slices.Sorted(maps.Keys(content)) {
		v := content[k]
		cp := &path{parent: p, key: k}
		if reason := checkKey(k); reason != "" {
			return nil, cp.errorf(reason)
		}
		if v == nil {
			return nil, cp.errorf("null member (twin content holds no nulls)")
		}
		if _, ok := v.(map[string]any); ok && d+1 > MaxDepth {
			return nil, depthError(cp, d+1)
		}
		var childMeta map[string]any
		if mv, ok := meta[k]; ok {
			if childMeta, ok = mv.(map[string]any); !ok {
				return nil, cp.errorf("metadata must be a JSON object")
			}
		}
		var child *node
		if obj, ok := v.(map[string]any); ok {
			child, err = load(obj, childMeta, cp, d+1, updated, version, withVersion)
		} else {
			child, err = loadLeaf(v, childMeta, cp, d+1, updated, version, withVersion)
		}
		if err != nil {
			return nil, err
		}
		members = append(members, member{key: k, klen: quotedLen(k), node: child})
	}
	return newObject(members, updated, version), nil
}

func loadLeaf(v any, meta map[string]any, p *path, d int, updated string, version int64, withVersion bool) (*node, error) {
	for _, k := range slices.Sorted(maps.Keys(meta)) {
		if !strings.HasPrefix(k, "$") {
			return nil, p.errorf(fmt.Sprintf("metadata for member %q of a leaf", k))
		}
	}
	updated, version, err := readMeta(meta, p, updated, version, withVersion)
	if err != nil {
		return nil, err
	}
	raw, err := appendLeaf(nil, v, p, d, loadCheck)
	if err != nil {
		return nil, err
	}
	return &node{raw: raw, updated: updated, version: version, size: len(raw)}, nil
}

func readMeta(meta map[string]any, p *path, updated string, version int64, withVersion bool) (string, int64, error) {
	if meta == nil {
		return updated, version, nil
	}
	if v, ok := meta["$lastUpdated"]; ok {
		s, ok := v.(string)
		if !ok {
			return "", 0, p.errorf("$lastUpdated must be a string")
		}
		updated = s
	}
	if v, ok := meta["$lastUpdatedVersion"]; ok && withVersion {
		num, ok := v.(json.Number)
		var err error
		if ok {
			version, err = num.Int64()
		}
		if !ok || err != nil {
			return "", 0, p.errorf("$lastUpdatedVersion must be an integer")
		}
	}
	return updated, version, nil
}
