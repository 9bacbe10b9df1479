// Package imagestore is the device's image store: it pulls module images from
// OCI registries, verifies every digest, keeps their blobs in one
// content-addressed store and unpacks each image once into a rootfs that all
// the modules using that image share.
//
// # Layout
//
// Under the store's dir (the daemon's image dir, e.g. /var/lib/outpost/images):
//
//	lock                         flock: one process owns the dir
//	blobs/sha256/<hex>           manifests, configs and compressed layers, by digest
//	rootfs/<manifest-hex>/       one unpacked filesystem per platform image manifest
//	images/<escaped-ref>.json    the image record: ref → manifest digest, config, last use
//
// # Verification
//
// The manifest's bytes are hashed and compared with the digest the registry or
// the index names; the config blob with the manifest's config descriptor; each
// layer blob with its descriptor (size and digest) as it is downloaded. As a
// layer is unpacked its uncompressed stream is hashed and compared with the
// config's diffID, and a blob that was already in the store (not downloaded
// by this pull) is hashed again, and removed if it no longer matches. A blob
// enters blobs/ only through a temp file renamed after its digest matched;
// go-containerregistry checks the same digests as it reads, this package does
// not rely on it. Blobs verified by a pull that then failed stay for the next
// attempt (bandwidth is dear on devices); GC removes them if none comes.
//
// # Safe unpack
//
// Layers are applied in order into rootfs/<hex>.tmp-<random> through an
// os.Root, so no write can leave the directory even through a symlink made by
// an earlier entry. Path components are resolved by the package itself with
// the rootfs as "/" (an absolute symlink such as alpine's /bin/sh → /bin/busybox
// points inside the rootfs, as it does in a container), and os.Root then
// checks the resolved path again. Refused, with an error naming the layer and
// the entry: names that are absolute or have a ".." component; symlinks whose
// relative target climbs above the root; hard links whose target is absolute,
// has a ".." component or is not a file already in the rootfs; character and
// block devices; unknown entry types; whiteouts of "..". FIFOs are skipped
// with a log line, PAX global headers silently.
// Whiteouts (.wh.NAME) remove NAME from lower layers and opaque markers
// (.wh..wh..opq) empty their directory of lower-layer content, in whatever
// order the layer lists them.
//
// Modes are kept as the image has them, setuid, setgid and sticky bits
// included: the runtimes need them (su, ping) and the rootfs is not a place
// users reach. Owners are applied only when the daemon runs as root; otherwise
// every file belongs to the daemon's user. Extended attributes (file
// capabilities) are not applied. Symlinks keep the mtime of their creation.
//
// # Crash safety
//
// A rootfs is renamed to its final name only once every layer is applied and
// syncfs(2) has flushed it; the image record is written (temp file, fsync,
// rename, directory fsync) only after that. Open removes what a killed pull
// left (*.tmp-*); a rootfs without a record is reused by the next pull of the
// same digest and otherwise removed by GC, as are blobs no record references.
//
// # Plain HTTP
//
// Registries are spoken to over HTTPS, except loopback registries (localhost,
// 127.0.0.0/8, ::1) and hosts WithInsecure allows; a request in plain HTTP to
// any other host (go-containerregistry would try it for RFC 1918 addresses) is
// refused before it is sent.
package imagestore
