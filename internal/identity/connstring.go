package identity

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Kind is the kind of identity a connection string belongs to.
type Kind int

// The kinds of connection string.
const (
	KindService Kind = iota + 1 // a shared access policy of the hub (no DeviceId)
	KindDevice                  // a device (DeviceId)
	KindModule                  // a module (DeviceId and ModuleId)
)

func (k Kind) String() string {
	switch k {
	case KindService:
		return "service"
	case KindDevice:
		return "device"
	case KindModule:
		return "module"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Connection string keys, spelled as IoT Hub writes them.
const (
	csHostName            = "HostName"
	csDeviceID            = "DeviceId"
	csModuleID            = "ModuleId"
	csSharedAccessKeyName = "SharedAccessKeyName"
	csSharedAccessKey     = "SharedAccessKey"
	csGatewayHostName     = "GatewayHostName"
	csUseInsecureHTTP     = "UseInsecureHttp"
)

var csKeys = []string{csHostName, csDeviceID, csModuleID, csSharedAccessKeyName,
	csSharedAccessKey, csGatewayHostName, csUseInsecureHTTP}

// maxPolicyNameLength is the longest shared access policy name accepted.
const maxPolicyNameLength = 64

// ConnectionString is an IoT Hub connection string, as in
// "HostName=hub.example;DeviceId=d1;SharedAccessKey=…".
//
// String returns the whole string, key included. Use Redacted for logs and
// messages.
type ConnectionString struct {
	HostName            string // hub host, possibly with a port: "localhost:8443"
	DeviceID            string
	ModuleID            string
	SharedAccessKeyName string // the policy name; set for service connection strings
	SharedAccessKey     string // base64
	GatewayHostName     string
	UseInsecureHTTP     bool // talk plain HTTP to the hub (a hub run with --insecure-http)
}

// ParseConnectionString parses and validates a connection string made of
// ';'-separated Key=Value parts. Keys are case-sensitive, and a value may
// contain '=' (base64 padding). Whitespace around the string, its parts,
// keys and values is ignored, and so are empty parts such as a trailing ';'.
// Unknown keys are errors. Errors never contain the key.
func ParseConnectionString(s string) (*ConnectionString, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("connection string is empty")
	}
	c := &ConnectionString{}
	seen := make(map[string]bool)
	for i, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("connection string: part %d is not Key=Value", i+1)
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		var dst *string
		switch name {
		case csHostName:
			dst = &c.HostName
		case csDeviceID:
			dst = &c.DeviceID
		case csModuleID:
			dst = &c.ModuleID
		case csSharedAccessKeyName:
			dst = &c.SharedAccessKeyName
		case csSharedAccessKey:
			dst = &c.SharedAccessKey
		case csGatewayHostName:
			dst = &c.GatewayHostName
		case csUseInsecureHTTP:
		case "x509":
			return nil, errors.New("connection string: x509 authentication is not supported; use SharedAccessKey")
		case "SharedAccessSignature":
			return nil, errors.New("connection string: SharedAccessSignature is not supported; use SharedAccessKey")
		default:
			return nil, unknownKeyError(name, i+1)
		}
		if seen[name] {
			return nil, fmt.Errorf("connection string: %s is given twice", name)
		}
		seen[name] = true
		if value == "" {
			return nil, fmt.Errorf("connection string: %s is empty", name)
		}
		if dst != nil {
			*dst = value
			continue
		}
		switch strings.ToLower(value) {
		case "true":
			c.UseInsecureHTTP = true
		case "false":
		default:
			return nil, fmt.Errorf("connection string: %s is %q, want true or false", name, value)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// unknownKeyError names the unknown key only when it cannot be key material.
// Base64 of 16 bytes or more is at least 22 characters before any padding,
// so a short name of letters and digits is safe to print. Anything else may
// be a mangled key, so only the part number is given.
func unknownKeyError(name string, part int) error {
	known := "known: " + strings.Join(csKeys, ", ")
	if name == "" || len(name) > 20 || strings.IndexFunc(name, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
	}) >= 0 {
		return fmt.Errorf("connection string: part %d has an unknown key (%s)", part, known)
	}
	for _, k := range csKeys {
		if strings.EqualFold(k, name) {
			return fmt.Errorf("connection string: unknown key %q (keys are case-sensitive: did you mean %s?)", name, k)
		}
	}
	return fmt.Errorf("connection string: unknown key %q (%s)", name, known)
}

// Validate checks that c is complete and consistent. It needs a HostName,
// and either a DeviceId (with an optional ModuleId) or a
// SharedAccessKeyName, with a SharedAccessKey in both cases. It validates
// ids, host names, the policy name and the key. The error never contains
// the key.
func (c *ConnectionString) Validate() error {
	if c.HostName == "" {
		return errors.New("connection string: missing HostName")
	}
	if err := validateHost(c.HostName); err != nil {
		return fmt.Errorf("connection string: HostName %q: %w", c.HostName, err)
	}
	if c.ModuleID != "" && c.DeviceID == "" {
		return errors.New("connection string: ModuleId requires DeviceId")
	}
	if c.DeviceID != "" {
		if err := ValidateDeviceID(c.DeviceID); err != nil {
			return fmt.Errorf("connection string: %w", err)
		}
	}
	if c.ModuleID != "" {
		if err := ValidateModuleIDAllowSystem(c.ModuleID); err != nil {
			return fmt.Errorf("connection string: %w", err)
		}
	}
	if c.SharedAccessKeyName != "" {
		if err := validatePolicyName(c.SharedAccessKeyName); err != nil {
			return fmt.Errorf("connection string: %w", err)
		}
	}
	switch {
	case c.DeviceID == "" && c.SharedAccessKeyName == "":
		return errors.New("connection string: missing DeviceId (for a device or module) or SharedAccessKeyName (for a hub policy)")
	case c.SharedAccessKey == "" && c.DeviceID != "":
		return errors.New("connection string: SharedAccessKey is required with DeviceId")
	case c.SharedAccessKey == "":
		return errors.New("connection string: SharedAccessKey is required with SharedAccessKeyName")
	}
	if err := ValidateKey(c.SharedAccessKey); err != nil {
		return fmt.Errorf("connection string: SharedAccessKey: %w", err)
	}
	if c.GatewayHostName != "" {
		if err := validateHost(c.GatewayHostName); err != nil {
			return fmt.Errorf("connection string: GatewayHostName %q: %w", c.GatewayHostName, err)
		}
	}
	return nil
}

// String formats c with its parts in a fixed order: HostName, DeviceId,
// ModuleId, SharedAccessKeyName, SharedAccessKey, GatewayHostName. Empty
// parts are left out, and UseInsecureHttp=true is added only when set. The
// result contains the key.
func (c *ConnectionString) String() string {
	return c.format(c.SharedAccessKey)
}

// Redacted is like String with the key replaced by "<redacted>". Use it in
// logs and messages.
func (c *ConnectionString) Redacted() string {
	k := ""
	if c.SharedAccessKey != "" {
		k = "<redacted>"
	}
	return c.format(k)
}

func (c *ConnectionString) format(key string) string {
	var parts []string
	add := func(name, value string) {
		if value != "" {
			parts = append(parts, name+"="+value)
		}
	}
	add(csHostName, c.HostName)
	add(csDeviceID, c.DeviceID)
	add(csModuleID, c.ModuleID)
	add(csSharedAccessKeyName, c.SharedAccessKeyName)
	add(csSharedAccessKey, key)
	add(csGatewayHostName, c.GatewayHostName)
	if c.UseInsecureHTTP {
		add(csUseInsecureHTTP, "true")
	}
	return strings.Join(parts, ";")
}

// Kind reports whose connection string c is. It is a module's when ModuleId
// is set, a device's when only DeviceId is set, and otherwise a hub
// policy's.
func (c *ConnectionString) Kind() Kind {
	switch {
	case c.ModuleID != "":
		return KindModule
	case c.DeviceID != "":
		return KindDevice
	}
	return KindService
}

// Resource is the SAS resource that tokens from c are for:
// HostName for a policy, HostName/devices/{DeviceId} for a device, and
// HostName/devices/{DeviceId}/modules/{ModuleId} for a module. HostName is
// used as written, with its port if it has one. That is what Azure SDKs
// sign for.
func (c *ConnectionString) Resource() string {
	switch c.Kind() {
	case KindModule:
		return ModuleResource(c.HostName, c.DeviceID, c.ModuleID)
	case KindDevice:
		return DeviceResource(c.HostName, c.DeviceID)
	}
	return c.HostName
}

// Token returns a SAS token for Resource() that expires ttl after now. It
// carries skn when SharedAccessKeyName is set.
func (c *ConnectionString) Token(ttl time.Duration, now time.Time) (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	if ttl <= 0 {
		return "", fmt.Errorf("connection string token: ttl %s is not positive", ttl)
	}
	return NewSAS(c.Resource(), c.SharedAccessKey, now.Add(ttl), c.SharedAccessKeyName)
}

// validateHost accepts host or host:port. The host is a DNS name (letters,
// digits, '-', '.', '_') or an IP address, with IPv6 in brackets when a port
// follows.
func validateHost(h string) error {
	host, bracketed := h, strings.HasPrefix(h, "[")
	switch {
	case bracketed && strings.HasSuffix(h, "]"):
		host = h[1 : len(h)-1]
	case bracketed || strings.Contains(h, ":"):
		var port string
		var err error
		host, port, err = net.SplitHostPort(h)
		if err != nil {
			return errors.New("want host or host:port")
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '0' {
			return fmt.Errorf("port %q is not 1-65535", port)
		}
	}
	if bracketed || strings.Contains(host, ":") {
		if !strings.Contains(host, ":") || net.ParseIP(host) == nil {
			return fmt.Errorf("%q is not an IPv6 address", host)
		}
		return nil
	}
	if host == "" {
		return errors.New("host is empty")
	}
	if len(host) > 253 {
		return errors.New("host is longer than 253 characters")
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return fmt.Errorf("%s at position %d is not allowed in a host name", describeChar(host[i:]), i)
		}
	}
	return nil
}

func validatePolicyName(name string) error {
	if len(name) > maxPolicyNameLength {
		return fmt.Errorf("policy name is longer than %d characters", maxPolicyNameLength)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return fmt.Errorf("policy name %q: %s at position %d is not allowed (allowed: A-Z a-z 0-9 and -._)", name, describeChar(name[i:]), i)
		}
	}
	return nil
}
