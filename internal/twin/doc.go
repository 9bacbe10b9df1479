// Package twin implements module twin documents in IoT Hub's shape:
//
//	{"deviceId", "moduleId", "etag", "version", "status", "tags",
//	 "properties": {"desired":  {…, "$metadata", "$version"},
//	                "reported": {…, "$metadata", "$version"}}}
//
// # Writes
//
// Patches are JSON merge patches (RFC 7386): null deletes a member, objects
// merge member by member, anything else (arrays included) replaces the old
// value whole. A section's patch must be a JSON object. Replacing a section
// (PUT) makes its content exactly the given object, null members dropped.
// Keys starting with '$' are rejected, so $metadata and $version cannot be
// written. Every write is atomic: on error the twin is left exactly as it was
// (content, metadata, versions, etag).
//
// # Versions
//
// A new twin has version 1 (etag "AAAAAAAAAAE=") and its desired and reported
// sections have $version 1 and no content. A write that changes a section
// bumps that section's $version by one (tags have no $version), and bumps the
// twin's version by one per write, however many sections it changed. The
// etag is base64 of the twin version's 8 big-endian bytes (see [ETag]). A
// write that changes no content (same values, deleting absent members, an
// empty patch) changes nothing at all and reports changed == false; so
// applying the same patch twice changes the twin once. (IoT Hub itself bumps
// versions on every PATCH.)
//
// # Metadata
//
// $metadata mirrors the content tree of desired and reported: every object
// and every leaf has $lastUpdated (RFC 3339 in UTC with seven fractional
// digits, [TimeLayout]); in desired also $lastUpdatedVersion, the desired
// $version at which the node last changed. Arrays are leaves. A write gives
// every node it creates or changes, and all of their ancestors up to the
// section root, the write's time and new $version; untouched members keep
// theirs, and a deleted member's metadata goes with it. A replace keeps the
// metadata of every node whose value it does not change. Tags carry no
// metadata.
//
// # Limits
//
// Enforced on every write, each failure an [*Error] naming the JSON path
// ("properties.desired.a.b: depth 11 exceeds 10"):
//
//   - At most 10 nested objects (or arrays) below desired, reported and
//     tags, as IoT Hub counts them: its documented example
//     tags.one.two…ten.property is valid. The depth of a value is the number
//     of steps (member keys and array indexes) from the section root to it:
//     in {"a": 1} the 1 is at depth 1, in {"a": {"b": [2]}} the object is at
//     depth 1, the array at 2 and the 2 at depth 3. An object or array may be
//     at depth 10 at most, any other value at depth 11 at most. Nulls in a
//     patch create nothing and are not counted.
//   - Numbers: integers within ±4503599627370495 (2^52−1, [MaxSafeInteger]),
//     other numbers finite 64-bit floats (1e400 is refused). Checked on
//     writes; a stored twin is read back as it was.
//   - Size ≤ 32 KiB for desired and reported, ≤ 8 KiB for tags: the length of
//     the section's content as compact JSON, $metadata and $version excluded,
//     keys sorted, strings escaped as encoding/json does without HTML
//     escaping (what DesiredJSON, ReportedJSON and TagsJSON return).
//   - Strings ≤ 4 KiB, counted in bytes of UTF-8 before escaping, anywhere in
//     a value (inside arrays too).
//   - Keys 1 byte to 1 KiB of UTF-8 with no '.', '$', space or control
//     character (C0, DEL, C1), anywhere in a value (inside arrays too).
//
// Numbers are kept as written ("1.0" stays "1.0", big integers are exact); a
// number written differently is a different value.
//
// A Twin is not safe for concurrent use. Its content trees are immutable and
// shared between a twin and its clones, so [Twin.Clone] is cheap.
package twin
