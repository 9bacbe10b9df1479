//go:build windows

package store

func syncAll() {}
