package broker

import (
	"errors"
	"fmt"
	"strconv"
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
// device last synced them. It returns the module id and the token's
// expiry.
func (b *Broker) authenticate(clientID, username string, password []byte) (string, time.Time, error) {
	deviceID, moduleID, ok := strings.Cut(clientID, "/")
	if !ok && isDeviceLogin(clientID, username) {
		return "", time.Time{}, b.authenticateDevice(clientID)
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
	sas, err := identity.ParseSAS(token)
	if err != nil {
		return time.Time{}, refuse(connackBadCredentials, "password is not a SAS token: %v", err)
	}
	resource := b.cfg.HubHostName + "/devices/" + b.cfg.DeviceID + "/modules/" + moduleID
	// Verify accepts a token for a prefix of the resource (a device token
	// covers its modules at the hub's REST API); a module must bring its own.
	if !strings.EqualFold(strings.TrimSuffix(sas.Resource, "/"), resource) {
		return time.Time{}, refuse(connackNotAuthorized, "the SAS token is for %q, not this module (%s)", sas.Resource, resource)
	}
	if sas.KeyName != "" {
		return time.Time{}, refuse(connackNotAuthorized, "the SAS token names policy %q: a module signs with its own key, without skn", sas.KeyName)
	}
	if err := sas.Verify(resource, b.now(), mod.PrimaryKey, mod.SecondaryKey); err != nil {
		switch {
		case errors.Is(err, identity.ErrExpired):
			return time.Time{}, refuse(connackBadCredentials, "%v: renew the token and connect again", err)
		case errors.Is(err, identity.ErrBadSignature):
			return time.Time{}, refuse(connackBadCredentials, "the SAS token's signature matches neither key of module %q (keys rotated? sign with its current key)", moduleID)
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

// authenticateDevice answers a device's own CONNECT: at once, as no device
// may connect here yet. Leaf devices (issue 16) will be authenticated here,
// with their keys as the device syncs them.
func (b *Broker) authenticateDevice(deviceID string) error {
	who := "device " + strconv.Quote(deviceID)
	if deviceID == b.cfg.DeviceID {
		who = "this device, " + strconv.Quote(deviceID) + ","
	}
	return refuse(connackBadClientID, "%s connected as a device (client id without a module): device MQTT is not supported yet "+
		"(devices, leaf devices included, cannot connect to this broker; issue 16): only the modules of device %q connect here, "+
		"as {deviceId}/{moduleId}; a device talks to its hub through `outpost daemon`", who, b.cfg.DeviceID)
}
