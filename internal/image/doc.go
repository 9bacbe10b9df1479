// Package image builds, keeps and pushes module images (DESIGN "Images"),
// with no Docker daemon.
//
// Build reads a module's module.yaml (LoadModule) and makes its image for
// each platform it names: a Go package cross-compiled with CGO off and
// -trimpath (build: go), a Dockerfile without RUN (build: dockerfile), or
// files copied in (build: files), on scratch or on a base image pulled once
// from any registry. One platform makes an image manifest, several an OCI
// image index of them (as docker buildx pushes them).
//
// Builds are reproducible: every time in the image is SOURCE_DATE_EPOCH
// (BuildOptions.SourceDateEpoch, default 0), files are sorted, owned by
// 0:0 without names, with modes 0755 (directories, executables) or 0644.
//
// Images go to a Cache, a local OCI image layout ($XDG_CACHE_HOME/outpost/oci
// by default), recorded in its index.json under their reference. Layers are
// compressed with a parallel gzip once, and kept by the digest of their
// uncompressed tar, so an unchanged layer is never rebuilt nor recompressed;
// writes go to temporary files renamed into place, so a full disk or a crash
// leaves the cache as it was.
//
// Push writes what Build made (Result.Artifact, or Cache.Lookup of a
// reference) to a registry.
package image
