package identity

import (
	"strings"
	"testing"
)

func TestValidateDeviceID(t *testing.T) {
	valid := []string{
		"d",
		"dev1",
		"A-Z.a_z:0+9%#*?!(),=@$'",
		"$notreserved-for-devices",
		"...", ".a", "a..",
		strings.Repeat("x", 128),
	}
	for _, id := range valid {
		if err := ValidateDeviceID(id); err != nil {
			t.Errorf("ValidateDeviceID(%q) = %v, want nil", id, err)
		}
	}
	invalid := map[string]string{
		"":                       `device id is empty`,
		"a b":                    `device id "a b": character ' ' at position 1 is not allowed (allowed: A-Z a-z 0-9 and -:.+%_#*?!(),=@$')`,
		"dev/1":                  `device id "dev/1": character '/' at position 3 is not allowed`,
		"dev;1":                  `character ';' at position 3`,
		"dév":                    `character 'é' at position 1`,
		"d\xff":                  `byte 0xff at position 1`,
		"tab\t":                  `character '\t' at position 3`,
		strings.Repeat("x", 129): `is 129 characters long, at most 128 are allowed`,
		".":                      `device id "." is not allowed: it is a path segment`,
		"..":                     `device id ".." is not allowed: it is a path segment`,
	}
	for id, want := range invalid {
		err := ValidateDeviceID(id)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateDeviceID(%q) = %v, want error containing %q", id, err, want)
		}
	}
}

func TestValidateModuleID(t *testing.T) {
	for _, id := range []string{"m1", "temp-sensor", "a$b"} {
		if err := ValidateModuleID(id); err != nil {
			t.Errorf("ValidateModuleID(%q) = %v", id, err)
		}
		if err := ValidateModuleIDAllowSystem(id); err != nil {
			t.Errorf("ValidateModuleIDAllowSystem(%q) = %v", id, err)
		}
	}
	err := ValidateModuleID("$edgeAgent")
	if err == nil || !strings.Contains(err.Error(), `module id "$edgeAgent": ids starting with '$' are reserved for system modules`) {
		t.Errorf("ValidateModuleID($edgeAgent) = %v", err)
	}
	if err := ValidateModuleIDAllowSystem("$edgeAgent"); err != nil {
		t.Errorf("ValidateModuleIDAllowSystem($edgeAgent) = %v", err)
	}
	for _, id := range []string{"", "m 1", "$a/b", strings.Repeat("m", 129), ".", ".."} {
		if ValidateModuleID(id) == nil || ValidateModuleIDAllowSystem(id) == nil {
			t.Errorf("module id %q accepted", id)
		}
	}
	if err := ValidateModuleID("m 1"); err == nil || !strings.HasPrefix(err.Error(), `module id "m 1":`) {
		t.Errorf("error does not name a module id: %v", err)
	}
}

func TestIsSystemModule(t *testing.T) {
	for id, want := range map[string]bool{"$edgeAgent": true, "$edgeHub": true, "agent": false, "a$": false, "": false} {
		if got := IsSystemModule(id); got != want {
			t.Errorf("IsSystemModule(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestResources(t *testing.T) {
	if got := DeviceResource("hub:8443", "d1"); got != "hub:8443/devices/d1" {
		t.Errorf("DeviceResource = %q", got)
	}
	if got := ModuleResource("hub", "d1", "$edgeAgent"); got != "hub/devices/d1/modules/$edgeAgent" {
		t.Errorf("ModuleResource = %q", got)
	}
}
