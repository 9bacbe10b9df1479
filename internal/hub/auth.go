package hub

import (
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/store"
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
	if !h.isOwnHost(host) {
		return principal{}, unauthorized("wrong resource: the token is for host %q, not this hub (%s)", host, h.ownHosts())
	}
	now := h.now()

	if sas.KeyName != "" {
		pol, err := h.policy(sas.KeyName)
		if errors.Is(err, store.ErrUnavailable) {
			return principal{}, toAPIError(err, "")
		}
		if err != nil {
			return principal{}, unauthorized("unknown policy %q", sas.KeyName)
		}
		if h.verified.has(header, pol, now) {
			return principal{policy: pol}, nil
		}
		if err := sas.Verify(host, now, pol.PrimaryKey, pol.SecondaryKey); err != nil {
			return principal{}, tokenError(err, "policy "+sas.KeyName)
		}
		h.verified.add(header, pol, sas.Expiry.Add(identity.ClockSkew))
		return principal{policy: pol}, nil
	}

	// A device or module token: sr = host/devices/{id}[/modules/{mid}].
	segs := strings.Split(strings.Trim(path, "/"), "/")
	if len(segs) < 2 || !strings.EqualFold(segs[0], "devices") || (len(segs) != 2 && (len(segs) != 4 || !strings.EqualFold(segs[2], "modules"))) {
		return principal{}, unauthorized("wrong resource: a token without skn must be for host/devices/{id} or host/devices/{id}/modules/{id}")
	}
	var modules []string
	if len(segs) == 4 {
		modules = idCandidates(segs[3])
	}
	// The 401 names the first identity found whose check failed, else the
	// first one not found.
	var unknown, failed *apiError
	notFound := func(e *apiError) {
		if unknown == nil {
			unknown = e
		}
	}
	fail := func(e *apiError) {
		if failed == nil {
			failed = e
		}
	}
	for _, deviceID := range idCandidates(segs[1]) {
		dev, err := h.reg.GetDevice(deviceID)
		if errors.Is(err, store.ErrUnavailable) {
			return principal{}, toAPIError(err, "")
		}
		if err != nil {
			notFound(unauthorized("unknown device %q", deviceID))
			continue
		}
		p := principal{deviceID: deviceID}
		if modules == nil {
			if e := h.verifyIdentity(sas, dev, p, dev.Authentication.SymmetricKey, now); e != nil {
				fail(e)
				continue
			}
			return p, nil
		}
		for _, moduleID := range modules {
			p.moduleID = moduleID
			mod, err := h.reg.GetModule(deviceID, moduleID)
			if err != nil {
				notFound(unauthorized("unknown module %s/%s", deviceID, moduleID))
				continue
			}
			if e := h.verifyIdentity(sas, dev, p, mod.Authentication.SymmetricKey, now); e != nil {
				fail(e)
				continue
			}
			return p, nil
		}
	}
	if failed != nil {
		return principal{}, failed
	}
	return principal{}, unknown
}

// verifyIdentity checks a device or module token against the keys of p.
func (h *Hub) verifyIdentity(sas *identity.SAS, dev registry.Device, p principal, keys *registry.SymmetricKey, now time.Time) *apiError {
	if keys == nil {
		return unauthorized("%s has no symmetric key", p)
	}
	if err := sas.Verify(sas.Resource, now, keys.PrimaryKey, keys.SecondaryKey); err != nil {
		return tokenError(err, p.String())
	}
	if dev.Status == "disabled" {
		return unauthorized("device %q is disabled", dev.DeviceID)
	}
	return nil
}

// idCandidates are the ids that an id segment of a token's resource may
// stand for. The resource is url-encoded once in sr, as IoT Hub, its Python
// SDK and outpost sign it, so the segment is the id as it is. Node's SDK
// url-encodes the id once more before it encodes the resource, so a segment
// holding %XX may also be the id decoded once more. Both are tried (the
// literal first): an id such as "a%41" is valid and distinct from "aA", and
// a token is only ever taken for an identity whose key signed it.
func idCandidates(seg string) []string {
	if u := unescape(seg); u != seg {
		return []string{seg, u}
	}
	return []string{seg}
}

// unescape undoes the percent-encoding Node's SDK leaves in sr's path.
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

// isOwnHost reports whether a token's host names this hub: its configured
// host name or one of its --san names, at the port of the host name (443
// when it has none). The Host header of the request plays no part: anyone
// can send any Host, so a token minted for another hub stays refused.
func (h *Hub) isOwnHost(host string) bool {
	name, port := splitHostPort(host)
	ownName, ownPort := splitHostPort(h.hostName)
	if port != ownPort {
		return false
	}
	if strings.EqualFold(name, ownName) {
		return true
	}
	for _, san := range h.cfg.SANs {
		if strings.EqualFold(name, strings.Trim(san, "[]")) {
			return true
		}
	}
	return false
}

// ownHosts names the hosts tokens may be for, for a 401.
func (h *Hub) ownHosts() string {
	_, port := splitHostPort(h.hostName)
	names := []string{h.hostName}
	for _, san := range h.cfg.SANs {
		if port != "443" {
			san = net.JoinHostPort(strings.Trim(san, "[]"), port)
		}
		if !slices.Contains(names, san) {
			names = append(names, san)
		}
	}
	return strings.Join(names, ", ")
}

// splitHostPort splits host[:port] with 443 as the default port.
func splitHostPort(s string) (host, port string) {
	if h, p, err := net.SplitHostPort(s); err == nil {
		return h, p
	}
	return strings.Trim(s, "[]"), "443"
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

// tokenCache remembers policy SAS tokens whose signature was checked, with
// the keys that checked it and when it expires: a service client sends the
// same token with every request until it renews it, and checking its HMAC
// against both keys on each was a few percent of a PATCH. A token counts as
// verified only while the policy still has both keys it was checked
// against (a regenerated key drops it) and until it expires.
type tokenCache struct {
	mu      sync.Mutex
	entries map[string]verifiedToken
}

type verifiedToken struct {
	primary, secondary string
	deadline           time.Time
}

// maxVerifiedTokens bounds the cache: past it, it starts again empty.
const maxVerifiedTokens = 4096

func (c *tokenCache) has(header string, pol *Policy, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[header]
	if !ok {
		return false
	}
	if now.After(e.deadline) || e.primary != pol.PrimaryKey || e.secondary != pol.SecondaryKey {
		delete(c.entries, header)
		return false
	}
	return true
}

func (c *tokenCache) add(header string, pol *Policy, deadline time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= maxVerifiedTokens {
		c.entries = make(map[string]verifiedToken)
	}
	c.entries[header] = verifiedToken{primary: pol.PrimaryKey, secondary: pol.SecondaryKey, deadline: deadline}
}
