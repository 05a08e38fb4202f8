package main

import (
	"bytes"
	"strings"
	"testing"
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
	if !strings.HasPrefix(out.String(), "spoolfs "+version) {
		t.Errorf("version printed %q", out.String())
	}
}
