package mountdev

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/procfs"
)

// parseMountInfo reads in as a mount table, through procfs as
// ReadMountInfo does, from a /proc of a test's own.
func parseMountInfo(t *testing.T, in string) ([]MountInfo, error) {
	t.Helper()
	proc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proc, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proc, "self", "mountinfo"), []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	fs, err := procfs.NewFS(proc)
	if err != nil {
		t.Fatal(err)
	}
	return fromProcfs(fs.GetMounts())
}

// TestReadMountInfo: the fields of each entry, escapes undone.
func TestReadMountInfo(t *testing.T) {
	in := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
43 22 0:39 / /tmp/with\040space rw,nosuid,nodev,relatime shared:7 master:2 - fuse.spoolfs spoolfs:vol1 rw,user_id=0,group_id=0,default_permissions
44 22 0:40 / /run/user rw - tmpfs tmpfs rw
45 43 0:41 / /tmp/with\040space rw - fuse fusectl\134x rw
`
	got, err := parseMountInfo(t, in)
	if err != nil {
		t.Fatal(err)
	}
	want := []MountInfo{
		{Major: 8, Minor: 1, Point: "/", FSType: "ext4", Source: "/dev/sda1", Opts: "relatime,rw"},
		{Minor: 39, Point: "/tmp/with space", FSType: "fuse.spoolfs", Source: "spoolfs:vol1", Opts: "nodev,nosuid,relatime,rw"},
		{Minor: 40, Point: "/run/user", FSType: "tmpfs", Source: "tmpfs", Opts: "rw"},
		{Minor: 41, Point: "/tmp/with space", FSType: "fuse", Source: `fusectl\x`, Opts: "rw"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if !got[1].IsFUSE() || !got[3].IsFUSE() || got[2].IsFUSE() {
		t.Error("IsFUSE wrong")
	}
}

func TestReadMountInfoMalformed(t *testing.T) {
	for _, in := range []string{"1 2 3\n", "22 1 x:1 / / rw - ext4 /dev/sda1 rw\n", "22 1 8:1 / / rw shared:1 ext4 /dev/sda1 rw\n", "22 1 8:1 / / rw - ext4\n"} {
		if _, err := parseMountInfo(t, in); err == nil {
			t.Errorf("mount table %q: nil error", in)
		}
	}
}

func TestUnescapeMountField(t *testing.T) {
	for in, want := range map[string]string{
		`plain`: "plain", `a\040b`: "a b", `\011\012\134`: "\t\n\\", `end\04`: `end\04`, `x\999`: `x\999`,
	} {
		if got := unescapeMountField(in); got != want {
			t.Errorf("unescapeMountField(%q) = %q, want %q", in, got, want)
		}
	}
}
