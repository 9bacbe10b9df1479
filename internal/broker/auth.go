package broker

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/syncer"
)

// authError is why a CONNECT was refused; code is the MQTT 3.1.1 CONNACK
// return code to send.
type authError struct {
	code   byte
	reason string
}

func (e *authError) Error() string { return e.reason }

// CONNACK return codes of MQTT 3.1.1.
const (
	connackBadProtocol    = 0x01
	connackBadClientID    = 0x02
	connackUnavailable    = 0x03
	connackBadCredentials = 0x04
	connackNotAuthorized  = 0x05
)

func refuse(code byte, format string, a ...any) *authError {
	return &authError{code: code, reason: fmt.Sprintf(format, a...)}
}

// authenticate checks a module's CONNECT: client id {deviceId}/{moduleId},
// username {hubHost}/{deviceId}/{moduleId}/?api-version=…, password a SAS
// token for that module signed with its primary or secondary key, as the
// device last synced them; or a child device's (see authenticateDevice). It
// returns the module id (or the child's device id) and the token's expiry.
func (b *Broker) authenticate(clientID, username string, password []byte) (string, time.Time, error) {
	deviceID, moduleID, ok := strings.Cut(clientID, "/")
	if !ok && isDeviceLogin(clientID, username) {
		exp, err := b.authenticateDevice(clientID, username, password)
		return clientID, exp, err
	}
	if !ok || deviceID == "" || moduleID == "" || strings.Contains(moduleID, "/") {
		return "", time.Time{}, refuse(connackBadClientID, "client id %q is not {deviceId}/{moduleId}", clientID)
	}
	if deviceID != b.cfg.DeviceID {
		return "", time.Time{}, refuse(connackBadClientID, "client id %q names device %q; this is device %q", clientID, deviceID, b.cfg.DeviceID)
	}
	wantUser := b.cfg.HubHostName + "/" + deviceID + "/" + moduleID + "/"
	if user, _, _ := strings.Cut(username, "?"); !strings.EqualFold(user, wantUser) {
		return "", time.Time{}, refuse(connackBadCredentials, "username %q is not %s?api-version=…", username, wantUser)
	}
	if len(password) == 0 {
		return "", time.Time{}, refuse(connackBadCredentials, "no password: send a SAS token for %s/devices/%s/modules/%s", b.cfg.HubHostName, deviceID, moduleID)
	}
	mod, err := b.module(moduleID)
	if err != nil {
		return "", time.Time{}, err
	}
	expiry, err := b.verifyToken(string(password), moduleID, mod)
	if err != nil {
		return "", time.Time{}, err
	}
	return moduleID, expiry, nil
}

// module returns a module's identity as the device last synced it.
func (b *Broker) module(moduleID string) (hubapi.SyncModule, error) {
	mods, err := b.cfg.Twins.Modules()
	if errors.Is(err, syncer.ErrNotSynced) {
		return hubapi.SyncModule{}, refuse(connackUnavailable, "the device has not synced with its hub yet, so it knows no module keys: retry once it has")
	}
	if err != nil {
		return hubapi.SyncModule{}, refuse(connackUnavailable, "read the module identities: %v", err)
	}
	for _, m := range mods {
		if m.ModuleID == moduleID {
			return m, nil
		}
	}
	return hubapi.SyncModule{}, refuse(connackNotAuthorized, "no module %q on device %q", moduleID, b.cfg.DeviceID)
}

// verifyToken checks that token is a SAS token for exactly this module
// (not its device, not another module) signed with one of its keys, and
// not expired.
func (b *Broker) verifyToken(token, moduleID string, mod hubapi.SyncModule) (time.Time, error) {
	resource := b.cfg.HubHostName + "/devices/" + b.cfg.DeviceID + "/modules/" + moduleID
	return b.verifySAS(token, resource, "module", moduleID, mod.PrimaryKey, mod.SecondaryKey)
}

// verifyChildToken checks that token is a SAS token for exactly this child
// device signed with one of its keys, and not expired.
func (b *Broker) verifyChildToken(token string, c hubapi.SyncChild) (time.Time, error) {
	resource := b.cfg.HubHostName + "/devices/" + c.DeviceID
	return b.verifySAS(token, resource, "device", c.DeviceID, c.PrimaryKey, c.SecondaryKey)
}

// verifySAS checks that token is a SAS token for exactly resource, signed
// with one of the keys of the module or device id (kind says which), without
// a policy name, and not expired.
func (b *Broker) verifySAS(token, resource, kind, id, primary, secondary string) (time.Time, error) {
	sas, err := identity.ParseSAS(token)
	if err != nil {
		return time.Time{}, refuse(connackBadCredentials, "password is not a SAS token: %v", err)
	}
	// Verify accepts a token for a prefix of the resource (a device token
	// covers its modules at the hub's REST API); a client must bring its own.
	if !strings.EqualFold(strings.TrimSuffix(sas.Resource, "/"), resource) {
		return time.Time{}, refuse(connackNotAuthorized, "the SAS token is for %q, not this %s (%s)", sas.Resource, kind, resource)
	}
	if sas.KeyName != "" {
		return time.Time{}, refuse(connackNotAuthorized, "the SAS token names policy %q: a %s signs with its own key, without skn", sas.KeyName, kind)
	}
	if err := sas.Verify(resource, b.now(), primary, secondary); err != nil {
		switch {
		case errors.Is(err, identity.ErrExpired):
			return time.Time{}, refuse(connackBadCredentials, "%v: renew the token and connect again", err)
		case errors.Is(err, identity.ErrBadSignature):
			return time.Time{}, refuse(connackBadCredentials, "the SAS token's signature matches neither key of %s %q (keys rotated? sign with its current key)", kind, id)
		}
		return time.Time{}, refuse(connackBadCredentials, "SAS token: %v", err)
	}
	return sas.Expiry, nil
}

// isDeviceLogin reports whether a CONNECT is a device's own, as the Azure
// IoT SDKs' device clients send it: client id {deviceId}, username
// {hubHost}/{deviceId}/?api-version=….
func isDeviceLogin(clientID, username string) bool {
	user, _, _ := strings.Cut(username, "?")
	return clientID != "" && strings.HasSuffix(user, "/"+clientID+"/") && strings.Count(user, "/") == 2
}

// authenticateDevice checks a device's own CONNECT (client id {deviceId},
// username {hubHost}/{deviceId}/?api-version=…): only a child of this edge
// device may connect so, with a SAS token for {hubHost}/devices/{deviceId}
// signed with its own key as the device last synced it (so offline too).
// It returns the token's expiry.
func (b *Broker) authenticateDevice(deviceID, username string, password []byte) (time.Time, error) {
	if deviceID == b.cfg.DeviceID {
		return time.Time{}, refuse(connackNotAuthorized, "this edge device, %q, connected as a device: it talks to its hub through `outpost daemon`, not through its own broker; "+
			"here connect its modules ({deviceId}/{moduleId}) and its child devices ({childId})", deviceID)
	}
	wantUser := b.cfg.HubHostName + "/" + deviceID + "/"
	if user, _, _ := strings.Cut(username, "?"); !strings.EqualFold(user, wantUser) {
		return time.Time{}, refuse(connackBadCredentials, "username %q is not %s?api-version=…", username, wantUser)
	}
	if len(password) == 0 {
		return time.Time{}, refuse(connackBadCredentials, "no password: send a SAS token for %s/devices/%s", b.cfg.HubHostName, deviceID)
	}
	c, err := b.cfg.Twins.Child(deviceID)
	switch {
	case errors.Is(err, syncer.ErrNotSynced):
		return time.Time{}, refuse(connackUnavailable, "the edge device has not synced with its hub yet, so it knows no child device keys: retry once it has")
	case errors.Is(err, syncer.ErrUnknownChild):
		return time.Time{}, refuse(connackNotAuthorized, "device %q is not a child of this edge device %q (as it last synced with its hub): "+
			"make it one at the hub (outpost device set-parent %s %s) or connect it to its own parent", deviceID, b.cfg.DeviceID, deviceID, b.cfg.DeviceID)
	case err != nil:
		return time.Time{}, refuse(connackUnavailable, "read the child devices: %v", err)
	case !c.Enabled():
		return time.Time{}, refuse(connackNotAuthorized, "child device %q is disabled at the hub", deviceID)
	}
	return b.verifyChildToken(string(password), c)
}
