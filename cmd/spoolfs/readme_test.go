package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// TestReadmeTour runs the README's short tour as written, top to bottom,
// in bash -e: replicas and the mount in the background, the probe, the
// umount, stopping the replicas, the --local mount around one command.
// Only `make build` is left out (the test's binary is bin/spoolfs) and the
// three ports are replaced by free ones.
func TestReadmeTour(t *testing.T) {
	testsupport.SkipShort(t, "mounts and replicas")
	testsupport.RequireMount(t)
	testsupport.RequireRoot(t, "the tour's mounts (as in the README: a root shell)")
	bash := testsupport.RequireCmd(t, "bash")
	script := tourScript(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(testsupport.Binary(t), filepath.Join(dir, "bin", "spoolfs")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, "-e", "-o", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // whatever the tour left running, if it failed
		unix.Unmount(filepath.Join(dir, "mnt"), unix.MNT_DETACH)
	})
	out, err := cmd.CombinedOutput()
	if err != nil {
		logs, _ := filepath.Glob(filepath.Join(dir, "data", "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", filepath.Base(l), b)
		}
		t.Fatalf("the tour failed: %v\n%s\nscript:\n%s", err, out, script)
	}
	for _, want := range []string{"hello", "spoolfs:spool", "fuse.spoolfs", "unmounted", "Usage:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the tour's output lacks %q:\n%s", want, out)
		}
	}
}

// tourScript is the README's tour without `make build`, on free ports.
func tourScript(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, tour, ok := strings.Cut(string(readme), "## A short tour")
	if ok {
		_, tour, ok = strings.Cut(tour, "```sh\n")
	}
	if ok {
		tour, _, ok = strings.Cut(tour, "```")
	}
	if !ok {
		t.Fatal("README.md has no ```sh block under \"## A short tour\"")
	}
	var lines []string
	for _, line := range strings.Split(tour, "\n") {
		if !strings.HasPrefix(line, "make build") {
			lines = append(lines, line)
		}
	}
	script := strings.Join(lines, "\n")
	for _, port := range []string{"7401", "7402", "7403"} {
		if !strings.Contains(script, "127.0.0.1:"+port) {
			t.Fatalf("the tour no longer uses 127.0.0.1:%s; update this test", port)
		}
		script = strings.ReplaceAll(script, "127.0.0.1:"+port, testsupport.FreeAddr(t))
	}
	return script
}
