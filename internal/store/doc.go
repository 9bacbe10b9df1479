// Package store is outpost's durable store of JSON records: one file per record in a data
// dir, an in-memory index, a version on every record for compare-and-swap, listing and
// watching by key prefix. The Store interface is small enough to be implemented on etcd
// later; FileStore implements it on local files.
//
// # Keys and values
//
// A key is a slash-separated path such as devices/dev1/modules/m1/twin, at most 1024 bytes.
// Segments are not empty, not "." or "..", and use only the characters IoT Hub allows in
// ids: A-Za-z0-9 and -:.+%_#*?!(),=@$'. A value is any valid JSON document; it is stored and
// returned byte for byte.
//
// # On disk
//
//	DIR/LOCK               pid of the owning process; flock(2) (LockFileEx on Windows)
//	DIR/REVISION           {"format":1,"revision":N}: no version above N was ever handed out
//	DIR/.REVISION.tmp-*    a REVISION write in progress; removed by Open
//	DIR/records/NAME.json  one file per record, mode 0600
//	DIR/records/*.tmp      writes in progress and spare files; removed by Open
//	DIR/records/txn-V.journal  a committed Txn being applied; Open finishes it
//
// NAME is the key with every byte outside [a-z0-9._-] percent-encoded in upper-case hex,
// '/', '%' and upper-case letters included (so "devices/Dev1" is devices%2F%44ev1.json),
// which keeps names distinct on case-insensitive file systems. Windows device names get
// their first byte encoded; a name over 138 bytes is cut and ends in ~ and a hash of the
// key. The directory is flat, so that one directory fsync covers any set of writes.
//
// A record file is one JSON document, padded with spaces to a multiple of 4 KiB:
//
//	{"key":"devices/dev1","v":7,"len":11,"value":{"a":"b"},"crc32c":"1A2B3C4D"}
//
// len is the value's length in bytes and crc32c (Castagnoli, hex) covers every byte before
// `,"crc32c"`, so Open can find the value without parsing it and can tell a damaged file.
// Open fails, naming the file, if a record file is damaged; since every file is written
// atomically that only happens when something outside outpost changed it.
//
// # Durability
//
// A write returns once it is durable: the new contents go to a temp file in records/,
// which is fsynced (fdatasync when it is a spare of the same size), renamed over the
// record's file (on Linux, exchanged with it in one renameat2 RENAME_EXCHANGE, which leaves
// the old record under the temp name), and the directory is fsynced. A crash at any moment leaves each record
// either as it was or as written, never partial. Readers read the in-memory index and never
// wait for the disk; a write becomes visible to Get, List and Watch once it is durable.
// Concurrent writers share directory fsyncs (group commit), and the file a write replaces
// (or a Delete removes) is kept as a spare to be overwritten by a later write, which costs
// a cache flush instead of a journal commit. If an fsync fails the store refuses writes
// until it is opened again.
//
// # Transactions
//
// Txn writes several records all or none. Its new record files are written to temp files
// first, then a journal holding every put and delete, fsynced and renamed into place: that
// durable rename is the commit point. Then the record files are renamed into place and
// removed, the directory fsynced, and the journal removed (durably) before Txn returns.
// Open finishes a journal left by a crash. Running out of space can only happen before
// the commit point, so a Txn that fails for want of space (a *SpaceError) changed
// nothing. A failure after the commit point makes the store refuse writes until it is
// opened again.
//
// # Versions
//
// Versions come from one counter for the whole store, like etcd's revisions: every Put
// gets a version above all versions handed out before, for any key. A record's version
// thus rises with each write, and a key deleted and created again never gets back an old
// version, so a compare-and-swap holding a version from before the delete fails. The
// counter survives restarts through REVISION, in which versions are reserved 1024 at a time
// before they are used; Close gives back the unused ones, so after a crash (only) versions
// jump by up to 1024. Versions are positive; 0 as an expected version means "does not
// exist" and Any (-1) means "whatever the version".
package store
