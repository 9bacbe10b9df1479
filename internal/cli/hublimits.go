package cli

import (
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/outpost-edge/outpost/internal/hub"
)

// addHubLimitFlags adds the per-client limits of `hub serve`.
func addHubLimitFlags(fl *pflag.FlagSet) {
	d := hub.DefaultLimits
	fl.Duration("read-header-timeout", d.ReadHeaderTimeout, "time a client has for its request headers, and the hub for its part of a TLS handshake once its turn comes (handshakes wait their turn in a storm of connections)")
	fl.Duration("read-timeout", d.ReadTimeout, "time a client has to send a request body, after its headers, and each of its turns in a TLS handshake")
	fl.Duration("write-timeout", d.WriteTimeout, "time to handle a request and write its answer (sync long polls get their wait on top)")
	fl.Duration("idle-timeout", d.IdleTimeout, "close keep-alive connections idle this long")
	fl.Int("max-conns-per-ip", d.MaxConnsPerIP, "open connections one remote address may have; more are closed at once (-1: no limit)")
}

// hubLimits reads the flags of addHubLimitFlags.
func hubLimits(v *viper.Viper) hub.Limits {
	return hub.Limits{
		ReadHeaderTimeout: v.GetDuration("read-header-timeout"),
		ReadTimeout:       v.GetDuration("read-timeout"),
		WriteTimeout:      v.GetDuration("write-timeout"),
		IdleTimeout:       v.GetDuration("idle-timeout"),
		MaxConnsPerIP:     v.GetInt("max-conns-per-ip"),
	}
}
