package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodConfig = `
node_id: mx1
listen: 10.0.0.7:7400
data_dir: /var/lib/spoolfs
admin: 127.0.0.1:7480
volumes:
  - name: mx1-spool
    mount_point: /var/spool/exim4
    replicas: [10.0.0.7:7400, 10.0.1.7:7400, 10.0.2.7:7400]
    w: 2
    flush_timeout: 5s
    log_bytes: 64MiB
    options: [allow_other, "entry_timeout=10m"]
    root_mode: "0750"
    root_owner: "101:102"
  - name: mx1-queue
    mount_point: /var/spool/postfix/
    replicas: 10.0.0.7:7400,10.0.1.7:7400,10.0.2.7:7400
`

func TestParseConfig(t *testing.T) {
	c, err := Parse([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeID != "mx1" || c.Listen != "10.0.0.7:7400" || c.DataDir != "/var/lib/spoolfs" || c.Admin != "127.0.0.1:7480" {
		t.Errorf("node fields: %+v", c)
	}
	if len(c.Volumes) != 2 {
		t.Fatalf("volumes: %+v", c.Volumes)
	}
	v := c.Volumes[0]
	if v.W != 2 || v.FlushTimeout != 5*time.Second || v.LogBytes != 64<<20 || len(v.Replicas) != 3 {
		t.Errorf("volume 0: %+v", v)
	}
	o, err := v.MountOptions("volumes[0]")
	if err != nil {
		t.Fatal(err)
	}
	if !o.AllowOther || o.EntryTimeout != 10*time.Minute || o.RootMode != 0o750 || o.RootUid != 101 || o.RootGid != 102 ||
		o.FlushTimeout != 5*time.Second || o.Dir != "/var/spool/exim4" || o.Volume != "mx1-spool" {
		t.Errorf("mount options: %+v", o)
	}
	v1 := c.Volumes[1]
	if len(v1.Replicas) != 3 || v1.Replicas[2] != "10.0.2.7:7400" || v1.MountPoint != "/var/spool/postfix" {
		t.Errorf("volume 1 (comma list, trailing slash): %+v", v1)
	}
	if o, _ := v1.MountOptions("v"); o.FlushTimeout != DefaultMountOptions().FlushTimeout || o.RootMode != 0o755 {
		t.Errorf("volume 1 defaults: %+v", o)
	}
	if o.Kernel.WritebackCache {
		t.Error("a replicated volume mounts with the write-back cache by default")
	}
	v1.Options = []string{"writeback_cache"}
	if o, err := v1.MountOptions("v"); err != nil || !o.Kernel.WritebackCache {
		t.Errorf("options writeback_cache: %v, write-back cache %v", err, o.Kernel.WritebackCache)
	}
}

// TestParseConfigErrors: each mistake is an error naming the field.
func TestParseConfigErrors(t *testing.T) {
	vol := func(extra string) string {
		return "volumes:\n  - name: v\n    mount_point: /mnt/v\n    replicas: [a:1, b:1, c:1]\n" + extra
	}
	for _, tc := range []struct{ yaml, want string }{
		{"", "empty"},
		{"- a\n- b\n", "line 1: top level: want a mapping"},
		{"node_id: x\nlisten: a:1\n", "data_dir: required when listen is set"},
		{"node_id: x\ndata_dir: /d\n", "listen: required when data_dir is set"},
		{"node_id: x\n", "nothing to do"},
		{"nodeid: x\n", "line 1: nodeid: unknown field (known: node_id, listen, data_dir, admin, volumes, tls, watch_buffer, allow_follow)"},
		{"listen: a:1\ndata_dir: /d\ntls:\n  cert: /nonexistent.crt\n", "tls: want all of the CA, certificate and key files"},
		{"listen: a:1\ndata_dir: /d\ntls:\n  certificate: x\n", "line 4: tls.certificate: unknown field (known: ca, cert, key)"},
		{"node_id: x\nnode_id: y\n", "line 2: node_id: given twice"},
		{"listen: nonsense\ndata_dir: /d\n", `listen: "nonsense": want host:port`},
		{"listen: a:99999\ndata_dir: /d\n", `listen: "a:99999": bad port`},
		{"admin: [1, 2]\nlisten: a:1\ndata_dir: /d\n", "line 1: admin: want a string"},
		{vol("    w: 1\n"), "volumes[0].w: must be 2 or 3"},
		{vol("    w: 4\n"), "volumes[0].w: must be 2 or 3"},
		{vol("    w: two\n"), `line 5: volumes[0].w: want an integer, got "two"`},
		{vol("    flush_timout: 5s\n"), "line 5: volumes[0].flush_timout: unknown field (known: name, mount_point, replicas, w, flush_timeout"},
		{vol("    flush_timeout: 5\n"), "volumes[0].flush_timeout: want a duration"},
		{vol("    flush_timeout: -1s\n"), "volumes[0].flush_timeout: must not be negative"},
		{vol("    log_bytes: lots\n"), `volumes[0].log_bytes: size "lots"`},
		{vol("    log_bytes: 1000\n"), "volumes[0].log_bytes: 1000 is below the minimum of 1MiB"},
		{vol("    options: [bogus]\n"), `volumes[0].options: unknown mount option "bogus"`},
		{vol("    max_follow_lag: 5s\n"), "volumes[0].max_follow_lag: only with follow: true"},
		{vol("    follow: true\n    max_follow_lag: -1s\n"), "volumes[0].max_follow_lag: must not be negative"},
		{vol("    entry_timeout: -1s\n"), "volumes[0].entry_timeout, attr_timeout: must not be negative"},
		{vol("    follow: yes please\n"), "volumes[0].follow: want"},
		{vol("    root_mode: 999\n"), "volumes[0].root_mode:"},
		{vol("    root_owner: root\n"), "volumes[0].root_owner:"},
		{vol("    max_inodes: -3\n"), "volumes[0].max_inodes: want a non-negative integer"},
		{"volumes:\n  - name: bad/name\n    mount_point: /m\n    replicas: [a:1]\n", "volumes[0].name: volume name"},
		{"volumes:\n  - name: v\n    mount_point: rel/dir\n    replicas: [a:1]\n", "volumes[0].mount_point: want an absolute path"},
		{"volumes:\n  - name: v\n    mount_point: /m\n", "volumes[0].replicas: required"},
		{"volumes:\n  - name: v\n    mount_point: /m\n    replicas: [a:1, a:1, b:1]\n", "volumes[0].replicas[1]: a:1 listed twice"},
		{"volumes:\n  - name: v\n    mount_point: /m\n    replicas: [a:0]\n", "volumes[0].replicas[0]: \"a:0\": a replica needs a fixed port"},
		{"volumes:\n  - name: v\n    mount_point: /m\n    replicas: [a:1, b:1]\n", "volumes[0].replicas: 2 given (a:1,b:1), want 3"},
		{"volumes:\n  - name: v\n    mount_point: /m\n    replicas: [a:1, b:1, c:1, d:1]\n", "volumes[0].replicas: 4 given (a:1,b:1,c:1,d:1), want 3"},
		{"volumes:\n  - name: v\n    mount_point: /m\n    replicas: [a:1, b:1, c:1]\n  - name: v\n    mount_point: /n\n    replicas: [a:1, b:1, c:1]\n",
			`volumes[1].name: volume "v" listed twice`},
		{"volumes:\n  - name: v\n    mount_point: /m\n    replicas: [a:1, b:1, c:1]\n  - name: w\n    mount_point: /m/\n    replicas: [a:1, b:1, c:1]\n",
			"volumes[1].mount_point: /m used by another volume"},
		{"volumes: {name: v}\n", "line 1: volumes: want a list"},
		{"volumes:\n  - [a]\n", "line 2: volumes[0]: want a mapping of fields"},
		// Several fields on one line (flow style): the one at fault is named.
		{"volumes:\n  - {name: v, w: x}\n", `line 2: volumes[0].w: want an integer, got "x"`},
		{"volumes:\n  - {name: v, flush_timout: 5s}\n", "line 2: volumes[0].flush_timout: unknown field"},
		{vol("    log_bytes: [1]\n"), "line 5: volumes[0].log_bytes: want a single value"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config:\n%s\nerror: %v\nwant one containing %q", tc.yaml, err, tc.want)
		}
	}
}

func TestCheckW(t *testing.T) {
	for _, tc := range []struct {
		w, n int
		ok   bool
	}{{0, 3, true}, {2, 3, true}, {3, 3, true}, {1, 3, false}, {4, 3, false}, {1, 1, true}, {2, 1, false}, {3, 5, true}, {2, 5, false}} {
		if err := CheckW("w", tc.w, tc.n); (err == nil) != tc.ok {
			t.Errorf("CheckW(%d of %d) = %v, want ok=%v", tc.w, tc.n, err, tc.ok)
		}
	}
	if err := CheckW("w", 2, 5); err == nil || !strings.Contains(err.Error(), "between 3 and 5") {
		t.Errorf("CheckW(2 of 5) = %v", err)
	}
}

func TestFlagNames(t *testing.T) {
	for in, want := range map[string]string{
		"volumes[0].w: must be 2 or 3":              "--w: must be 2 or 3",
		"volumes[0].replicas[1]: a:1 listed twice":  "--replicas[1]: a:1 listed twice",
		"data_dir: required when listen is set (x)": "--data: required when --listen is set (x)",
		"volumes[0].options: unknown mount option":  "-o: unknown mount option",
	} {
		if got := FlagNames(in); got != want {
			t.Errorf("FlagNames(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestExampleConfig: the example shipped in deploy/examples is valid.
func TestExampleConfig(t *testing.T) {
	path := filepath.Join("..", "..", "deploy", "examples", "node.yaml")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the example config is missing: %v", err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Volumes) == 0 || c.Listen == "" {
		t.Errorf("the example should show a replica and a volume: %+v", c)
	}
}

func TestParseOwner(t *testing.T) {
	if u, g, err := ParseOwner("8:12"); err != nil || u != 8 || g != 12 {
		t.Errorf("ParseOwner(8:12) = %d, %d, %v", u, g, err)
	}
	for _, bad := range []string{"8", "a:b", "8:", ":8", "-1:2"} {
		if _, _, err := ParseOwner(bad); err == nil {
			t.Errorf("ParseOwner(%q) = nil error", bad)
		}
	}
}

// TestFollowerConfig: follow: true and options [ro] both make a follower
// (not MS_RDONLY: promotion must turn it read-write without an unmount),
// with 60 s cache timeouts unless options or fields set them; a primary
// keeps an hour.
func TestFollowerConfig(t *testing.T) {
	c, err := Parse([]byte(`
volumes:
  - name: f1
    mount_point: /f1
    replicas: [a:1, b:1, c:1]
    follow: true
    max_follow_lag: 2s
  - name: f2
    mount_point: /f2
    replicas: [a:1, b:1, c:1]
    options: [ro, "entry_timeout=5s"]
  - name: f3
    mount_point: /f3
    replicas: [a:1, b:1, c:1]
    follow: true
    attr_timeout: 7s
  - name: p
    mount_point: /p
    replicas: [a:1, b:1, c:1]
    entry_timeout: 90s
`))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		follower     bool
		entry, attrs time.Duration
	}{{true, time.Minute, time.Minute}, {true, 5 * time.Second, time.Minute}, {true, time.Minute, 7 * time.Second}, {false, 90 * time.Second, time.Hour}} {
		o, err := c.Volumes[i].MountOptions("v")
		if err != nil {
			t.Fatal(err)
		}
		if o.Follower != want.follower || o.ReadOnly || o.EntryTimeout != want.entry || o.AttrTimeout != want.attrs {
			t.Errorf("volume %d: follower %v ro %v entry %v attr %v, want follower %v, not ro, %v, %v",
				i, o.Follower, o.ReadOnly, o.EntryTimeout, o.AttrTimeout, want.follower, want.entry, want.attrs)
		}
	}
	if c.Volumes[0].MaxFollowLag != 2*time.Second {
		t.Errorf("max_follow_lag: %v", c.Volumes[0].MaxFollowLag)
	}
}
