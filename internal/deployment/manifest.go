package deployment

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/suggest"
	"github.com/outpost-edge/outpost/internal/twin"
)

// Manifest is a deployment for one device: the modules it runs, how to run
// them, and the initial desired properties of their twins.
type Manifest struct {
	// SchemaVersion is the version of the document the manifest was read
	// from: "1.0" for a native manifest, the $edgeAgent schemaVersion for
	// an IoT Edge manifest or an $edgeAgent twin.
	SchemaVersion string
	// AgentSchema is the $edgeAgent schemaVersion AgentDesired writes, as
	// the IoT Edge manifest or the $edgeAgent twin gave it; "" (a native
	// manifest) writes AgentSchemaVersion.
	AgentSchema string
	// SystemModules is $edgeAgent's systemModules as given (compact JSON),
	// written back by AgentDesired; nil writes one naming the daemon.
	SystemModules json.RawMessage
	// Hub is the $edgeHub desired properties as given (compact JSON); nil
	// when the manifest has no $edgeHub part. See HubDesired.
	Hub                 json.RawMessage
	RegistryCredentials map[string]RegistryCredential // by name; nil when there are none
	Modules             map[string]Module             // by module id; never nil after Parse
}

// RegistryCredential lets the daemon pull images from a private registry.
type RegistryCredential struct {
	Address  string // registry host, such as "myreg.example:5000"
	Username string
	Password string
}

// Module says how one module runs.
type Module struct {
	Name          string            // the module id, the same as its key in Manifest.Modules
	Image         string            // an image reference with a tag or a digest, as written
	Version       string            // changing it forces the instance to be re-created; may be empty
	Status        string            // StatusRunning or StatusStopped
	RestartPolicy string            // RestartNever, RestartOnFailure, RestartOnUnhealthy or RestartAlways
	StartupOrder  int64             // 0 to MaxStartupOrder; lower starts first, equal values start together
	Env           map[string]string // nil when there is none
	CreateOptions CreateOptions
	// Desired is the initial desired properties of the module's twin, a
	// compact JSON object; nil when the manifest gives none. It is not part
	// of the $edgeAgent twin, so FromAgentDesired leaves it nil.
	Desired json.RawMessage
}

// CreateOptions is the subset of Docker's container create options that
// every runtime applies. Raw holds the whole create options as compact JSON
// (nil when the manifest gives none); the docker runtime may pass it on as it
// is. Raw is authoritative: the typed fields are read from it. A manifest
// built in code may leave Raw nil, and AgentDesired then writes the typed
// fields.
type CreateOptions struct {
	Cmd        []string          `json:"Cmd,omitempty"`
	Entrypoint []string          `json:"Entrypoint,omitempty"`
	Env        []string          `json:"Env,omitempty"`
	WorkingDir string            `json:"WorkingDir,omitempty"`
	User       string            `json:"User,omitempty"`
	Labels     map[string]string `json:"Labels,omitempty"`
	HostConfig HostConfig        `json:"HostConfig,omitzero"`
	// Healthcheck overrides the image's HEALTHCHECK, field by field as
	// Docker merges them; nil keeps the image's.
	Healthcheck *Healthcheck    `json:"Healthcheck,omitempty"`
	Raw         json.RawMessage `json:"-"`
}

// Healthcheck is Docker's HealthConfig: a command the daemon runs inside a
// running instance every Interval; Retries failures in a row (a non-zero
// exit, or no answer within Timeout) make the instance unhealthy, except
// during StartPeriod after it starts. Durations are nanoseconds in JSON, as
// in Docker; zero values are inherited from the image, then Docker's
// defaults.
type Healthcheck struct {
	// Test is ["NONE"] (no check), ["CMD", arg…] or ["CMD-SHELL", command]
	// (run by /bin/sh -c); empty inherits the image's.
	Test        []string      `json:"Test,omitempty"`
	Interval    time.Duration `json:"Interval,omitempty"`
	Timeout     time.Duration `json:"Timeout,omitempty"`
	StartPeriod time.Duration `json:"StartPeriod,omitempty"`
	Retries     int           `json:"Retries,omitempty"`
}

// HostConfig is the subset of Docker's HostConfig that runtimes apply.
type HostConfig struct {
	Binds        []string                 `json:"Binds,omitempty"`        // "host-src:container-dest[:options]"
	PortBindings map[string][]PortBinding `json:"PortBindings,omitempty"` // by "port/proto", such as "8883/tcp"
}

// PortBinding publishes a container port on the host.
type PortBinding struct {
	HostIP   string `json:"HostIp,omitempty"`
	HostPort string `json:"HostPort,omitempty"`
}

// Module statuses.
const (
	StatusRunning = "running"
	StatusStopped = "stopped"
)

// Restart policies, as IoT Edge names them.
const (
	RestartNever       = "never"
	RestartOnFailure   = "on-failure"
	RestartOnUnhealthy = "on-unhealthy"
	RestartAlways      = "always"
)

// Defaults for fields a manifest leaves out.
const (
	DefaultStatus        = StatusRunning
	DefaultRestartPolicy = RestartAlways
	// DefaultStartupOrder is IoT Edge's default: a module without a
	// startupOrder starts after every module that has one.
	DefaultStartupOrder = MaxStartupOrder
)

// MaxStartupOrder is the largest startupOrder, as in IoT Edge (a uint32).
// It is typed int64, as [Module.StartupOrder] is, so that it does not
// overflow int where int is 32 bits (linux/arm).
const MaxStartupOrder int64 = math.MaxUint32

// NativeSchemaVersion is the schemaVersion of native manifests.
const NativeSchemaVersion = "1.0"

// AgentSchemaVersion is the schemaVersion AgentDesired writes for a native
// manifest (IoT Edge's schema with startupOrder).
const AgentSchemaVersion = "1.1"

var (
	statuses        = []string{StatusRunning, StatusStopped}
	restartPolicies = []string{RestartNever, RestartOnFailure, RestartOnUnhealthy, RestartAlways}
)

// oneOf returns why s is not one of allowed, or "".
func oneOf(s string, allowed []string) string {
	for _, a := range allowed {
		if s == a {
			return ""
		}
	}
	msg := fmt.Sprintf("%q is not one of %s", s, strings.Join(allowed, ", "))
	if hint := suggest.Closest(s, allowed); hint != "" {
		msg += " (did you mean " + hint + "?)"
	}
	return msg
}

// checkModuleID returns why id cannot name a module in a deployment, or "".
func checkModuleID(id string) string {
	if err := identity.ValidateModuleID(id); err != nil {
		return err.Error()
	}
	if strings.ContainsAny(id, ".$") {
		return fmt.Sprintf("module id %q: '.' and '$' are not allowed in a deployed module's id, because the id is a key of the $edgeAgent twin; rename the module", id)
	}
	return ""
}

// checkImage returns why ref is not a usable image reference, or "".
func checkImage(ref string) string {
	if ref == "" {
		return "missing; set the module's image, such as localhost:5000/tempsensor:1.0"
	}
	if strings.HasPrefix(ref, "$upstream") {
		return fmt.Sprintf("%q: images from the parent device ($upstream) are not supported yet; give the registry's address", ref)
	}
	if strings.Contains(ref, "${") {
		return fmt.Sprintf("%q holds an unexpanded template variable; generate the deployment from its template first", ref)
	}
	if strings.TrimSpace(ref) != ref {
		return fmt.Sprintf("%q: remove the spaces around the image reference", ref)
	}
	if _, err := name.ParseReference(ref, name.WeakValidation); err != nil {
		// ParseReference says only that neither form parsed; ask the
		// one the reference is written in for the reason.
		if strings.Contains(ref, "@") {
			_, err = name.NewDigest(ref, name.WeakValidation)
		} else {
			_, err = name.NewTag(ref, name.WeakValidation)
		}
		return fmt.Sprintf("%q is not a valid image reference: %v (want [registry/]repository[:tag][@sha256:digest], lower case)", ref, err)
	}
	return ""
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// checkEnvName returns why k is not a usable environment variable name, or "".
func checkEnvName(k string) string {
	if len(k) > twin.MaxKeySize {
		return fmt.Sprintf("name is %d bytes long; at most %d are allowed", len(k), twin.MaxKeySize)
	}
	if !envName.MatchString(k) {
		return fmt.Sprintf("%q is not a valid environment variable name (letters, digits and '_', not starting with a digit)", k)
	}
	return ""
}

// checkTwinKey returns why key cannot be a key of a twin, or "" (the rule of
// internal/twin).
func checkTwinKey(key string) string {
	switch {
	case key == "":
		return "empty key"
	case len(key) > twin.MaxKeySize:
		return fmt.Sprintf("key is %d bytes long; at most %d are allowed in a twin", len(key), twin.MaxKeySize)
	}
	for _, r := range key {
		switch {
		case r == '.', r == '$':
			return fmt.Sprintf("%q: a twin key cannot contain %q", key, r)
		case r == ' ':
			return fmt.Sprintf("%q: a twin key cannot contain a space", key)
		case unicode.IsControl(r):
			return fmt.Sprintf("%q: a twin key cannot contain control character %U", key, r)
		}
	}
	return ""
}

// checkString returns why s is too long for a twin, or "".
func checkString(s string) string {
	if len(s) > twin.MaxStringSize {
		return fmt.Sprintf("is %d bytes long; a twin string holds at most %d", len(s), twin.MaxStringSize)
	}
	return ""
}
