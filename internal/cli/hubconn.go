package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
)

// HubClient returns a client for the hub named by the connection string of
// the configuration (--hub, OUTPOST_CONNECTION_STRING or connection-string
// in the config file), trusting the CA of --ca (OUTPOST_CA). The commands
// that use it manage identities and twins, so the string must be a shared
// access policy's, not a device's or a module's.
func (f *Factory) HubClient() (*hubclient.Client, error) {
	v := f.Config()
	s := v.GetString("connection-string")
	if strings.TrimSpace(s) == "" {
		// hubclient says what to do.
		return hubclient.New(s, "")
	}
	cs, err := identity.ParseConnectionString(s)
	if err != nil {
		return nil, &ExitError{Code: ExitFailure, Err: err,
			Hint: "check the hub connection string (--hub, OUTPOST_CONNECTION_STRING or connection-string in the config file); `outpost hub credentials` prints the owner's"}
	}
	if cs.Kind() != identity.KindService {
		return nil, &ExitError{Code: ExitFailure,
			Err:  fmt.Errorf("the hub connection string is a %s's (%s): this command needs an operator's shared access policy connection string (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…)", cs.Kind(), cs.Redacted()),
			Hint: "pass --hub or set OUTPOST_CONNECTION_STRING to a policy's connection string; `outpost hub credentials` prints the owner's"}
	}
	c, err := hubclient.New(s, v.GetString("ca"))
	if err != nil {
		return nil, withHint(err, "check --ca (OUTPOST_CA): it names the hub's CA certificate file; `outpost hub credentials` prints it")
	}
	return c, nil
}

// outputFormat is the chosen -o: table, json or yaml.
func (f *Factory) outputFormat() string {
	if o := f.Config().GetString("output"); o != "" {
		return o
	}
	return "table"
}

// status writes a status line to stderr.
func (f *Factory) status(format string, a ...any) {
	fmt.Fprintf(f.IO.ErrOut, format+"\n", a...)
}

// target is what a command acts on: a device, or a module of a device.
type target struct {
	Device string
	Module string // "" for the device itself
}

func (t target) String() string {
	if t.Module == "" {
		return t.Device
	}
	return t.Device + "/" + t.Module
}

// what names the target in messages: "device d1" or "module d1/m1".
func (t target) what() string {
	if t.Module == "" {
		return "device " + t.Device
	}
	return "module " + t.String()
}

// targetForm says which forms of argument a command takes.
type targetForm int

const (
	deviceOnly     targetForm = iota // DEVICE
	moduleRequired                   // DEVICE/MODULE
	moduleOptional                   // DEVICE or DEVICE/MODULE
)

func (tf targetForm) String() string {
	switch tf {
	case deviceOnly:
		return "DEVICE"
	case moduleRequired:
		return "DEVICE/MODULE"
	}
	return "DEVICE or DEVICE/MODULE"
}

// parseTarget reads a DEVICE or DEVICE/MODULE argument and checks the ids
// against IoT Hub's rules. Its errors are usage errors that name the
// expected form. Module ids may start with '$' (system modules such as
// $edgeAgent); whether one may be created is the hub's call.
func parseTarget(arg string, form targetForm) (target, error) {
	dev, mod, hasSlash := strings.Cut(arg, "/")
	example := map[targetForm]string{deviceOnly: "dev-1", moduleRequired: "dev-1/tempsensor", moduleOptional: "dev-1 or dev-1/tempsensor"}[form]
	bad := func(why string) error {
		return flagErrorf("invalid %s %q: %s (for example %s)", form, arg, why, example)
	}
	switch {
	case form == deviceOnly && hasSlash:
		return target{}, bad("want a device id alone, without /MODULE")
	case form == moduleRequired && !hasSlash:
		return target{}, bad("want DEVICE/MODULE")
	case hasSlash && strings.Contains(mod, "/"):
		return target{}, bad("want one '/' between the device id and the module id")
	case dev == "":
		return target{}, bad("the device id is empty")
	case hasSlash && mod == "":
		return target{}, bad("the module id is empty")
	}
	if err := identity.ValidateDeviceID(dev); err != nil {
		return target{}, flagErrorf("invalid %s %q: %v", form, arg, err)
	}
	if hasSlash {
		if err := identity.ValidateModuleIDAllowSystem(mod); err != nil {
			return target{}, flagErrorf("invalid %s %q: %v", form, arg, err)
		}
	}
	return target{Device: dev, Module: mod}, nil
}

// withHint adds a next step to err when it has none, keeping its exit code.
func withHint(err error, hint string) error {
	if err == nil || ownHint(err) != "" {
		return err
	}
	return &ExitError{Code: exitCode(err), Err: err, Hint: hint}
}

// notFoundHint adds, to a not-found error about t, how to see what exists.
func notFoundHint(err error, t target) error {
	if !errors.Is(err, hubclient.ErrNotFound) {
		return err
	}
	var he *hubclient.Error
	if t.Module == "" || errors.As(err, &he) && he.Code == "DeviceNotFound" {
		return withHint(err, "`outpost device list` shows the devices; `outpost device create "+t.Device+"` creates it")
	}
	return withHint(err, "`outpost module list "+t.Device+"` shows its modules; `outpost module create "+t.String()+"` creates it")
}

// redacted stands for a key that is not shown.
const redacted = "<redacted>"

// validateKeyFlag checks a --primary-key/--secondary-key value without
// echoing it.
// addKeyFlags adds --primary-key and --secondary-key.
func addKeyFlags(fl *pflag.FlagSet, primary, secondary *string) {
	fl.StringVar(primary, "primary-key", "", "the primary `KEY`, base64 of 16 to 64 bytes (default: generated by the hub)")
	fl.StringVar(secondary, "secondary-key", "", "the secondary `KEY`, base64 of 16 to 64 bytes (default: generated by the hub)")
}

// validateKeyFlags checks the values of --primary-key and --secondary-key.
func validateKeyFlags(primary, secondary string) error {
	if err := validateKeyFlag("primary-key", primary); err != nil {
		return err
	}
	return validateKeyFlag("secondary-key", secondary)
}

// sasAuth is the authentication of an identity with the given keys; nil
// (the hub generates both) when neither is given.
func sasAuth(primary, secondary string) *hubapi.Authentication {
	if primary == "" && secondary == "" {
		return nil
	}
	return &hubapi.Authentication{Type: "sas", SymmetricKey: &hubapi.SymmetricKey{PrimaryKey: primary, SecondaryKey: secondary}}
}

func validateKeyFlag(name, key string) error {
	if key == "" {
		return nil
	}
	if err := identity.ValidateKey(key); err != nil {
		return flagErrorf("invalid --%s: %v (want standard base64 of 16 to 64 bytes, e.g. from `openssl rand -base64 32`)", name, err)
	}
	return nil
}

// since formats t relative to now for tables: "-" for never.
func since(now, t time.Time) string {
	if t.IsZero() || t.Year() <= 1 {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return t.UTC().Format(time.RFC3339)
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// stamp formats t for key: value output ("-" for never).
func stamp(now, t time.Time) string {
	if t.IsZero() || t.Year() <= 1 {
		return "-"
	}
	return t.UTC().Format(time.RFC3339) + " (" + since(now, t) + ")"
}
