// Package repotest tests the repository as a whole rather than one package:
// that every command the docs show runs (docs_test.go), and that the release
// configuration, the packaging and scripts/test agree (release_test.go).
//
// The docs test reads README.md and docs/*.md; the markers it understands in
// the markdown are described in docs_test.go, so that adding a doc or a block
// needs no change in Go.
package repotest
