package store

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	removeFixtures()
	os.Exit(code)
}
