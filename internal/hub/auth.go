package hub

import (
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/registry"
)

// Rights of a shared access policy, with IoT Hub's names.
const (
	RegistryRead   = "registryRead"
	RegistryWrite  = "registryWrite"
	ServiceConnect = "serviceConnect"
	DeviceConnect  = "deviceConnect"
)

// Policy is a shared access policy of the hub.
type Policy struct {
	KeyName      string   `json:"keyName"`
	PrimaryKey   string   `json:"primaryKey"`
	SecondaryKey string   `json:"secondaryKey"`
	Rights       []string `json:"rights"`
}

// principal is who a request comes from: a policy, a device or a module.
type principal struct {
	policy   *Policy
	deviceID string // set for device and module tokens
	moduleID string // set for module tokens
}

func (p principal) can(right string) bool {
	return p.policy != nil && slices.Contains(p.policy.Rights, right)
}

// isDevice reports whether p is the device id itself (not one of its modules).
func (p principal) isDevice(id string) bool {
	return p.policy == nil && p.deviceID == id && p.moduleID == ""
}

func (p principal) String() string {
	switch {
	case p.policy != nil:
		return "policy " + p.policy.KeyName
	case p.moduleID != "":
		return "module " + p.deviceID + "/" + p.moduleID
	}
	return "device " + p.deviceID
}

// authenticate checks the request's SAS token. Its 401s say which part
// failed and never echo a secret.
func (h *Hub) authenticate(r *http.Request) (principal, *apiError) {
	header := r.Header.Get("Authorization")
	if header == "" {
		return principal{}, unauthorized("no Authorization header: send a SAS token (SharedAccessSignature sr=…&sig=…&se=…)")
	}
	sas, err := identity.ParseSAS(header)
	if err != nil {
		return principal{}, unauthorized("malformed SAS token: %v", err)
	}
	host, path, _ := strings.Cut(sas.Resource, "/")
	if !h.isOwnHost(host, r.Host) {
		return principal{}, unauthorized("wrong resource: the token is for host %q, not this hub (%s)", host, h.hostName)
	}
	now := h.now()

	if sas.KeyName != "" {
		pol, err := h.policy(sas.KeyName)
		if err != nil {
			return principal{}, unauthorized("unknown policy %q", sas.KeyName)
		}
		if err := sas.Verify(host, now, pol.PrimaryKey, pol.SecondaryKey); err != nil {
			return principal{}, tokenError(err, "policy "+sas.KeyName)
		}
		return principal{policy: pol}, nil
	}

	// A device or module token: sr = host/devices/{id}[/modules/{mid}].
	segs := strings.Split(strings.Trim(path, "/"), "/")
	if len(segs) < 2 || !strings.EqualFold(segs[0], "devices") || (len(segs) != 2 && (len(segs) != 4 || !strings.EqualFold(segs[2], "modules"))) {
		return principal{}, unauthorized("wrong resource: a token without skn must be for host/devices/{id} or host/devices/{id}/modules/{id}")
	}
	deviceID := unescape(segs[1])
	dev, err := h.reg.GetDevice(deviceID)
	if err != nil {
		return principal{}, unauthorized("unknown device %q", deviceID)
	}
	var keys *registry.SymmetricKey
	p := principal{deviceID: deviceID}
	if len(segs) == 4 {
		p.moduleID = unescape(segs[3])
		mod, err := h.reg.GetModule(deviceID, p.moduleID)
		if err != nil {
			return principal{}, unauthorized("unknown module %s/%s", deviceID, p.moduleID)
		}
		keys = mod.Authentication.SymmetricKey
	} else {
		keys = dev.Authentication.SymmetricKey
	}
	if err := sas.Verify(sas.Resource, now, keys.PrimaryKey, keys.SecondaryKey); err != nil {
		return principal{}, tokenError(err, p.String())
	}
	if dev.Status == "disabled" {
		return principal{}, unauthorized("device %q is disabled", deviceID)
	}
	return p, nil
}

// unescape undoes the percent-encoding some SDKs leave in sr's path.
func unescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// isOwnHost reports whether a token's host names this hub: the configured
// host name, or the host the request was sent to.
func (h *Hub) isOwnHost(host, requestHost string) bool {
	strip := func(s string) string {
		if hh, port, err := net.SplitHostPort(s); err == nil && port == "443" {
			return hh
		}
		return s
	}
	host = strip(host)
	return strings.EqualFold(host, strip(h.hostName)) || strings.EqualFold(host, strip(requestHost))
}

func unauthorized(format string, a ...any) *apiError {
	return errorf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", format, a...)
}

func tokenError(err error, who string) *apiError {
	switch {
	case errors.Is(err, identity.ErrExpired):
		return unauthorized("expired token for %s: make a new one", who)
	case errors.Is(err, identity.ErrBadSignature):
		return unauthorized("bad signature for %s: the token was not signed with its key", who)
	case errors.Is(err, identity.ErrWrongResource):
		return unauthorized("wrong resource for %s", who)
	}
	return unauthorized("invalid token for %s: %v", who, err)
}

func forbidden(p principal, what string) *apiError {
	return errorf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "%s may not %s", p, what)
}

func missingRight(p principal, right string) *apiError {
	return errorf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "%s lacks the %s right", p, right)
}
