package twin

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// Section names a part of a twin.
type Section string

// The three writable parts of a twin.
const (
	Desired  Section = "desired"
	Reported Section = "reported"
	Tags     Section = "tags"
)

// path returns the section's JSON path in the twin document.
func (s Section) path() string {
	switch s {
	case Tags:
		return "tags"
	case Desired:
		return "properties.desired"
	case Reported:
		return "properties.reported"
	}
	return "properties." + string(s)
}

// limit returns the section's size limit.
func (s Section) limit() int {
	switch s {
	case Tags:
		return MaxTagsSize
	case Reported:
		return MaxReportedSize
	}
	return MaxDesiredSize
}

// TimeLayout is the layout of $lastUpdated: RFC 3339 in UTC with seven
// fractional digits, as IoT Hub writes it.
const TimeLayout = "2006-01-02T15:04:05.0000000Z"

// zeroTime is $lastUpdated of a node whose stored document had no metadata.
const zeroTime = "0001-01-01T00:00:00Z"

// Twin is a module (or device) twin. DeviceID, ModuleID and Status are
// identity fields the caller owns; ETag and Version are maintained by the
// write methods and should only be read. Make a Twin with New or
// UnmarshalJSON; the zero Twin is not usable. A Twin is not safe for
// concurrent use; Clone is cheap (it shares the immutable content trees).
type Twin struct {
	DeviceID string
	ModuleID string // empty for a device twin
	ETag     string
	Version  int64
	Status   string // "enabled" or "disabled"

	tags     *node
	desired  *node
	reported *node
	// $version of desired and reported
	desiredVersion  int64
	reportedVersion int64
}

// New returns an empty twin: version 1, desired and reported at $version 1,
// $lastUpdated set to now.
func New(deviceID, moduleID string, now time.Time) *Twin {
	ts := formatTime(now)
	return &Twin{
		DeviceID:        deviceID,
		ModuleID:        moduleID,
		Status:          "enabled",
		Version:         1,
		ETag:            ETag(1),
		tags:            newObject(nil, ts, 0),
		desired:         newObject(nil, ts, 1),
		reported:        newObject(nil, ts, 0),
		desiredVersion:  1,
		reportedVersion: 1,
	}
}

// ETag returns the etag of twin version v: base64 of its 8 big-endian bytes,
// as IoT Hub writes it ("AAAAAAAAAAE=" for 1). HTTP headers carry it quoted.
func ETag(v int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	return base64.StdEncoding.EncodeToString(b[:])
}

// formatTime is t.UTC().Format(TimeLayout), written out by hand: Format was
// a quarter of what applying a small patch cost.
func formatTime(t time.Time) string {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.Format(TimeLayout)
	}
	hour, minute, sec := t.Clock()
	var b [len(TimeLayout)]byte
	put := func(at, n, width int) {
		for i := at + width - 1; i >= at; i-- {
			b[i] = byte('0' + n%10)
			n /= 10
		}
	}
	put(0, year, 4)
	b[4] = '-'
	put(5, int(month), 2)
	b[7] = '-'
	put(8, day, 2)
	b[10] = 'T'
	put(11, hour, 2)
	b[13] = ':'
	put(14, minute, 2)
	b[16] = ':'
	put(17, sec, 2)
	b[19] = '.'
	put(20, t.Nanosecond()/100, 7)
	b[27] = 'Z'
	return string(b[:])
}

// Clone returns an independent copy of t.
func (t *Twin) Clone() *Twin {
	c := *t
	return &c
}

// DesiredVersion returns $version of the desired properties.
func (t *Twin) DesiredVersion() int64 { return t.desiredVersion }

// ReportedVersion returns $version of the reported properties.
func (t *Twin) ReportedVersion() int64 { return t.reportedVersion }

func (t *Twin) root(s Section) *node {
	switch s {
	case Desired:
		return t.desired
	case Reported:
		return t.reported
	case Tags:
		return t.tags
	}
	return nil
}

// prepare computes the new root of section s after writing v to it (merge
// patch, or whole replacement with replace set), without changing t. It
// returns nil when nothing would change.
func (t *Twin) prepare(s Section, v any, replace bool, now string) (*node, error) {
	p := &path{key: s.path()}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, p.errorf("must be a JSON object, not " + kindOf(v))
	}
	w := writer{updated: now}
	if s == Desired {
		w.version = t.desiredVersion + 1
	}
	n, changed, err := w.merge(t.root(s), obj, replace, p, 0)
	if err != nil || !changed {
		return nil, err
	}
	if n.size > s.limit() {
		return nil, p.errorf(fmt.Sprintf("size %d bytes exceeds %d", n.size, s.limit()))
	}
	return n, nil
}

// commit installs new roots (nil: unchanged) and bumps versions and etag.
func (t *Twin) commit(tags, desired, reported *node) bool {
	if tags == nil && desired == nil && reported == nil {
		return false
	}
	if tags != nil {
		t.tags = tags
	}
	if desired != nil {
		t.desired = desired
		t.desiredVersion++
	}
	if reported != nil {
		t.reported = reported
		t.reportedVersion++
	}
	t.Version++
	t.ETag = ETag(t.Version)
	return true
}

func (t *Twin) write(s Section, doc []byte, replace bool, now time.Time) (bool, error) {
	v, err := decodeAt(doc, &path{key: s.path()})
	if err != nil {
		return false, err
	}
	n, err := t.prepare(s, v, replace, formatTime(now))
	if err != nil || n == nil {
		return false, err
	}
	var nodes [3]*node // tags, desired, reported
	switch s {
	case Tags:
		nodes[0] = n
	case Desired:
		nodes[1] = n
	case Reported:
		nodes[2] = n
	}
	return t.commit(nodes[0], nodes[1], nodes[2]), nil
}

// PatchDesired applies a JSON merge patch to the desired properties.
// It reports whether anything changed; on error t is unchanged.
func (t *Twin) PatchDesired(patch []byte, now time.Time) (changed bool, err error) {
	return t.write(Desired, patch, false, now)
}

// PatchReported applies a JSON merge patch to the reported properties.
func (t *Twin) PatchReported(patch []byte, now time.Time) (changed bool, err error) {
	return t.write(Reported, patch, false, now)
}

// PatchTags applies a JSON merge patch to the tags.
func (t *Twin) PatchTags(patch []byte, now time.Time) (changed bool, err error) {
	return t.write(Tags, patch, false, now)
}

// ReplaceDesired replaces the desired properties with doc (a JSON object;
// null members are dropped). Nodes whose value does not change keep their
// metadata; $version is bumped as for a patch.
func (t *Twin) ReplaceDesired(doc []byte, now time.Time) (bool, error) {
	return t.write(Desired, doc, true, now)
}

// ReplaceTags replaces the tags with doc.
func (t *Twin) ReplaceTags(doc []byte, now time.Time) (bool, error) {
	return t.write(Tags, doc, true, now)
}

// Apply applies an IoT Hub twin PATCH body,
// {"tags": {…}, "properties": {"desired": {…}}}, atomically: every part or
// none. Each part is a merge patch; absent parts are left alone. Other
// top-level members (deviceId, etag, status, …) are ignored. A reported part
// is an error unless allowReported.
func (t *Twin) Apply(body []byte, now time.Time, allowReported bool) (bool, error) {
	return t.applyBody(body, now, false, allowReported)
}

// Replace applies an IoT Hub twin PUT body atomically: tags and desired
// properties are replaced whole (an absent part becomes empty), as
// ReplaceTags and ReplaceDesired do. Other top-level members are ignored; a
// reported part is an error.
func (t *Twin) Replace(body []byte, now time.Time) (bool, error) {
	return t.applyBody(body, now, true, false)
}

func (t *Twin) applyBody(body []byte, now time.Time, replace, allowReported bool) (bool, error) {
	v, err := decodeAt(body, nil)
	if err != nil {
		return false, err
	}
	doc, ok := v.(map[string]any)
	if !ok {
		return false, &Error{Reason: "twin body must be a JSON object, not " + kindOf(v)}
	}
	var parts [3]any // tags, desired, reported
	var present [3]bool
	parts[0], present[0] = doc["tags"]
	if pv, ok := doc["properties"]; ok {
		props, ok := pv.(map[string]any)
		if !ok {
			return false, &Error{Path: "properties", Reason: "must be a JSON object, not " + kindOf(pv)}
		}
		// In key order, so that the error named is always the same; a
		// body has one or two.
		var few [4]string
		keys := few[:0]
		for k := range props {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			v := props[k]
			switch k {
			case "desired":
				parts[1], present[1] = v, true
			case "reported":
				if replace || !allowReported {
					return false, &Error{Path: "properties.reported", Reason: "reported properties are written by the module only"}
				}
				parts[2], present[2] = v, true
			default:
				p := &path{parent: &path{key: "properties"}, key: k}
				return false, p.errorf("unknown twin section (want desired or reported)")
			}
		}
	}
	ts := formatTime(now)
	var nodes [3]*node
	for i, s := range [3]Section{Tags, Desired, Reported} {
		if !present[i] {
			if !replace || s == Reported {
				continue
			}
			parts[i] = map[string]any{}
		}
		if nodes[i], err = t.prepare(s, parts[i], replace, ts); err != nil {
			return false, err
		}
	}
	return t.commit(nodes[0], nodes[1], nodes[2]), nil
}

// KindOf names the kind of a decoded JSON value for messages: "null",
// "a boolean", "a string", "an array", "an object" or "a number".
func KindOf(v any) string { return kindOf(v) }

func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		return "a number"
	}
}

// DesiredJSON returns the desired properties as compact JSON with keys
// sorted, without $metadata and $version.
func (t *Twin) DesiredJSON() []byte { return appendContent(make([]byte, 0, t.desired.size), t.desired) }

// ReportedJSON returns the reported properties like DesiredJSON.
func (t *Twin) ReportedJSON() []byte {
	return appendContent(make([]byte, 0, t.reported.size), t.reported)
}

// TagsJSON returns the tags as compact JSON with keys sorted.
func (t *Twin) TagsJSON() []byte { return appendContent(make([]byte, 0, t.tags.size), t.tags) }

// Desired returns a copy of the desired properties, without $metadata and
// $version. Numbers are json.Number.
func (t *Twin) Desired() map[string]any { return toMap(t.DesiredJSON()) }

// Reported returns a copy of the reported properties like Desired.
func (t *Twin) Reported() map[string]any { return toMap(t.ReportedJSON()) }

// Tags returns a copy of the tags like Desired.
func (t *Twin) Tags() map[string]any { return toMap(t.TagsJSON()) }

func toMap(b []byte) map[string]any {
	v, err := decodeAt(b, nil)
	if err != nil {
		panic("twin: cannot decode own content: " + err.Error())
	}
	return v.(map[string]any)
}

// SectionJSON returns a section as IoT Hub sends it over MQTT and in GET
// responses: desired and reported with $metadata and $version after the
// content, tags as plain content. It returns nil for an unknown section.
func (t *Twin) SectionJSON(s Section) []byte {
	switch s {
	case Desired:
		return appendSection(make([]byte, 0, sectionLen(t.desired, true)), t.desired, t.desiredVersion, true)
	case Reported:
		return appendSection(make([]byte, 0, sectionLen(t.reported, false)), t.reported, t.reportedVersion, false)
	case Tags:
		return t.TagsJSON()
	}
	return nil
}

// PropertiesJSON returns {"desired": …, "reported": …} with each section as
// SectionJSON writes it: the body of an MQTT twin GET response.
func (t *Twin) PropertiesJSON() []byte {
	return t.appendProperties(make([]byte, 0, t.propertiesLen()))
}
