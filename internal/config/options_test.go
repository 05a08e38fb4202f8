package config

import (
	"strings"
	"testing"
	"time"
)

func TestApplyOptionString(t *testing.T) {
	o := DefaultMountOptions()
	if err := ApplyOptionString(&o, "allow_other,ro,sync,noexec,nosuid,nodev,default_permissions,entry_timeout=10s,attr_timeout=1.5"); err != nil {
		t.Fatal(err)
	}
	if !o.AllowOther || !o.ReadOnly || !o.Sync || !o.NoExec {
		t.Errorf("flags not set: %+v", o)
	}
	if o.EntryTimeout != 10*time.Second || o.AttrTimeout != 1500*time.Millisecond {
		t.Errorf("timeouts = %v, %v; want 10s, 1.5s", o.EntryTimeout, o.AttrTimeout)
	}
	if err := ApplyOptionString(&o, "rw,async,exec,,"); err != nil {
		t.Fatal(err)
	}
	if o.ReadOnly || o.Sync || o.NoExec {
		t.Errorf("rw,async,exec did not clear: %+v", o)
	}
}

func TestApplyOptionStringErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"allow_other,frobnicate", `unknown mount option "frobnicate"`},
		{"ro=1", `"ro" takes no value`},
		{"entry_timeout=soon", `entry_timeout="soon"`},
		{"attr_timeout", `attr_timeout=""`},
		{"entry_timeout=-1s", `entry_timeout="-1s"`},
	} {
		o := DefaultMountOptions()
		err := ApplyOptionString(&o, tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ApplyOptionString(%q) = %v; want an error containing %s", tc.in, err, tc.want)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
	}{
		{"0", 0}, {"4096", 4096}, {"1GiB", 1 << 30}, {"1gib", 1 << 30}, {"512M", 512e6},
		{"512MB", 512e6}, {"2k", 2000}, {"2KiB", 2048}, {"1.5GiB", 3 << 29}, {"1 TiB", 1 << 40},
		{"10b", 10}, {"2Ki", 2048}, {"3mi", 3 << 20}, {" 64 MiB ", 64 << 20}, {"1T", 1e12}, {"1PiB", 1 << 50},
	} {
		got, err := ParseBytes(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "GiB", "1XB", "-1", "1e3", "99999999999999999999", "20000000TiB", "1.2.3G"} {
		if got, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) = %d; want an error", bad, got)
		}
	}
}

func TestValidateVolumeName(t *testing.T) {
	for _, ok := range []string{"spool", "mx1-spool", "a", "A.b_c-9", strings.Repeat("x", 63)} {
		if err := ValidateVolumeName(ok); err != nil {
			t.Errorf("ValidateVolumeName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-x", ".x", "a/b", "a b", "a,b", "a:b", strings.Repeat("x", 64), "é"} {
		if err := ValidateVolumeName(bad); err == nil {
			t.Errorf("ValidateVolumeName(%q) = nil; want an error", bad)
		}
	}
}

func TestReaddirplusMode(t *testing.T) {
	var m ReaddirplusMode
	for _, s := range []string{"off", "ON", "auto"} {
		if err := m.Set(s); err != nil || string(m) != strings.ToLower(s) {
			t.Errorf("Set(%q) = %v, mode %q", s, err, m)
		}
	}
	if err := m.Set("sometimes"); err == nil {
		t.Error("Set(sometimes) = nil; want an error")
	}
}
