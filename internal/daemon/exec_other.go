//go:build !unix

package daemon

import "log/slog"

// Exec returns ErrNoBinary: the daemon binary is built for Linux only.
func Exec(Config, slog.Level) error { return ErrNoBinary }
