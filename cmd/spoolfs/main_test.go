package main

import (
	"bytes"
	"io"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/spoolfs/spoolfs/internal/config"
)

// TestRunExitStatus: command-line mistakes are usage errors (2) and mount
// nothing; the checks here all fail before any mount is tried.
func TestRunExitStatus(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"version"}, 0},
		{[]string{"--help"}, 0},
		{[]string{"version", "extra"}, 2},
		{[]string{"mount", "--local", "--bogus", "v", dir}, 2},
		{[]string{"mount", "--local", "-o", "bogus", "v", dir}, 2},
		{[]string{"mount", "--local", "--root-mode", "999", "v", dir}, 2},
		{[]string{"mount", "--local", "--root-owner", "root", "v", dir}, 2},
		{[]string{"mount", "--local", "--readdirplus", "maybe", "v", dir}, 2},
		{[]string{"mount", "--local", "--max-write", "2GiB", "v", dir}, 2},
		{[]string{"mount", "--local", "v", dir, "--"}, 2},
		{[]string{"mount", "v", dir}, 2},
		{[]string{"mount", "--replicas", "127.0.0.1:1,127.0.0.1:2", "v", dir}, 2},
		{[]string{"mount", "--replicas", "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3,127.0.0.1:4", "v", dir}, 2},
		{[]string{"mount", "--local", "v"}, 2},
		{[]string{"nosuchcommand"}, 2},
		{[]string{"mount", "--local", "v", dir + "/missing"}, 1},
	} {
		if got := run(tc.args); got != tc.want {
			t.Errorf("spoolfs %s: exit status %d, want %d", strings.Join(tc.args, " "), got, tc.want)
		}
	}
}

func TestVersion(t *testing.T) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != versionLine() {
		t.Errorf("version printed %q, want %q", got, versionLine())
	}
}

func TestFormatVersion(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261206225424-b33304fc3594+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "b33304fc3594e29d"},
			{Key: "vcs.time", Value: "2026-12-06T22:54:24Z"}, {Key: "vcs.modified", Value: "true"}}}
	for _, tc := range []struct {
		info     *debug.BuildInfo
		override string
		want     string
	}{
		{info, "", "spoolfs v0.0.0-20261206225424-b33304fc3594+dirty (commit b33304fc3594e29d+dirty of 2026-12-06T22:54:24Z, go1.26.8 linux/amd64)"},
		{info, "v1.2.3", "spoolfs v1.2.3 (commit b33304fc3594e29d+dirty of 2026-12-06T22:54:24Z, go1.26.8 linux/amd64)"},
		{&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "",
			"spoolfs (devel) (commit unknown: built without VCS information (-buildvcs=false?), go1.26.8 linux/amd64)"},
	} {
		if got := formatVersion(tc.info, tc.override, "linux/amd64"); got != tc.want {
			t.Errorf("formatVersion = %q\nwant            %q", got, tc.want)
		}
	}
}

// TestMountExamplesParse: every example of `spoolfs mount --help` is a
// valid command line (flags, arguments, options, replicas), checked as
// far as it goes before anything is mounted.
func TestMountExamplesParse(t *testing.T) {
	validate := func(c *cobra.Command, f *mountFlags, args []string) error {
		if err := f.finish(c); err != nil {
			return err
		}
		if err := config.ValidateVolumeName(args[0]); err != nil {
			return err
		}
		_, err := childArgv(c, args)
		return err
	}
	lines := strings.Split(newMountCmd().Example, "\n")
	if len(lines) < 3 {
		t.Fatalf("examples: %q", lines)
	}
	for _, line := range lines {
		shellLine, _, _ := strings.Cut(line, "#") // a comment
		fields := strings.Fields(strings.TrimSuffix(strings.TrimSpace(shellLine), "&"))
		if len(fields) < 3 || fields[0] != "spoolfs" || fields[1] != "mount" {
			t.Errorf("example %q is not a spoolfs mount command", line)
			continue
		}
		c := mountCmd(validate)
		c.SetArgs(fields[2:])
		c.SetOut(io.Discard)
		c.SetErr(io.Discard)
		if err := c.Execute(); err != nil {
			t.Errorf("example %q: %v", line, err)
		}
	}
}
