package identity

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxIDLength is the longest device or module id IoT Hub accepts.
const MaxIDLength = 128

// idSpecials are the characters other than ASCII letters and digits that a
// device or module id may contain.
const idSpecials = "-:.+%_#*?!(),=@$'"

const idRule = "allowed: A-Z a-z 0-9 and " + idSpecials

// ValidateDeviceID reports whether id is a valid device id: 1 to 128 of
// A-Z a-z 0-9 and -:.+%_#*?!(),=@$' (IoT Hub's rule), other than "." and
// "..", which URLs and file systems read as path segments.
func ValidateDeviceID(id string) error {
	return validateID("device id", id)
}

// ValidateModuleID reports whether id is a valid id for a user module. It
// follows the device id rule, and it also rejects ids that start with '$'
// because those belong to system modules such as $edgeAgent.
func ValidateModuleID(id string) error {
	if err := validateID("module id", id); err != nil {
		return err
	}
	if IsSystemModule(id) {
		return fmt.Errorf("module id %q: ids starting with '$' are reserved for system modules", id)
	}
	return nil
}

// ValidateModuleIDAllowSystem is like ValidateModuleID but also accepts
// system module ids such as $edgeAgent.
func ValidateModuleIDAllowSystem(id string) error {
	return validateID("module id", id)
}

// IsSystemModule reports whether id names a system module. Those ids start
// with '$', as in $edgeAgent.
func IsSystemModule(id string) bool {
	return strings.HasPrefix(id, "$")
}

// DeviceResource returns the SAS resource of a device: host/devices/deviceID.
func DeviceResource(host, deviceID string) string {
	return host + "/devices/" + deviceID
}

// ModuleResource returns the SAS resource of a module:
// host/devices/deviceID/modules/moduleID.
func ModuleResource(host, deviceID, moduleID string) string {
	return DeviceResource(host, deviceID) + "/modules/" + moduleID
}

func validateID(what, id string) error {
	if id == "" {
		return fmt.Errorf("%s is empty (1-%d characters, %s)", what, MaxIDLength, idRule)
	}
	if len(id) > MaxIDLength {
		return fmt.Errorf("%s %q: is %d characters long, at most %d are allowed", what, id[:32]+"...", len(id), MaxIDLength)
	}
	if id == "." || id == ".." {
		return fmt.Errorf("%s %q is not allowed: it is a path segment in URLs and file names (use other characters too)", what, id)
	}
	for i := 0; i < len(id); i++ {
		if !isIDChar(id[i]) {
			return fmt.Errorf("%s %q: %s at position %d is not allowed (%s)", what, id, describeChar(id[i:]), i, idRule)
		}
	}
	return nil
}

func isIDChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte(idSpecials, c) >= 0
}

// describeChar names the first character of s for an error message. If that
// byte does not start valid UTF-8, it names the byte.
func describeChar(s string) string {
	r, size := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && size <= 1 {
		return fmt.Sprintf("byte 0x%02x", s[0])
	}
	return fmt.Sprintf("character %q", r)
}
