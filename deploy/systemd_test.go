package deploy

// The systemd units (checked by systemd-analyze verify when it is
// installed, and for the properties docs/operations.md relies on) and the
// fstab mount helper (run for real: it mounts a --local volume).

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

const sdDir = "systemd"

// unitFile reads a unit into section → key → values (keys may repeat).
func unitFile(t *testing.T, name string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(sdDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: bad line %q", name, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func TestSystemdVerify(t *testing.T) {
	analyze := testsupport.RequireCmd(t, "systemd-analyze")
	dir := t.TempDir()
	// verify wants every ExecStart binary to exist: point them at true(1).
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	units := map[string]string{
		"spoolfs-node.service":    "spoolfs-node.service",
		"spoolfs-replica.service": "spoolfs-replica.service",
		"spoolfs-mount@.service":  "spoolfs-mount@test.service",
	}
	var paths []string
	for src, dst := range units {
		data, err := os.ReadFile(filepath.Join(sdDir, src))
		if err != nil {
			t.Fatal(err)
		}
		data = bytes.ReplaceAll(data, []byte("/usr/local/bin/spoolfs"), []byte(truePath))
		p := filepath.Join(dir, dst)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput()
	// Unknown keys are only warnings: any line about our units fails.
	var ours []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, dir) || strings.Contains(l, "spoolfs") {
			ours = append(ours, l)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, strings.Join(ours, "\n"))
	}
}

// mountNamespaceOptions would give the mount unit a mount namespace of its
// own, hiding the spool from the host.
var mountNamespaceOptions = []string{
	"ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts",
	"ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
	"ProtectProc", "ProcSubset", "ProtectHostname", "ReadOnlyPaths", "ReadWritePaths",
	"InaccessiblePaths", "TemporaryFileSystem", "BindPaths", "BindReadOnlyPaths", "MountFlags",
	"RootDirectory", "RootImage", "DynamicUser", "PrivateUsers",
}

// TestSystemdMountingUnits: the units that mount (a volume; a node that may
// have volumes) keep the mount on the host and drain on stop.
func TestSystemdMountingUnits(t *testing.T) {
	for _, name := range []string{"spoolfs-mount@.service", "spoolfs-node.service"} {
		checkMountingUnit(t, name, unitFile(t, name)["Service"])
	}
	post := strings.Join(unitFile(t, "spoolfs-mount@.service")["Service"]["ExecStartPost"], " ")
	if !strings.Contains(post, "probe --wait") {
		t.Errorf("spoolfs-mount@.service: ExecStartPost does not wait for the mount to answer")
	}
}

func checkMountingUnit(t *testing.T, name string, s map[string][]string) {
	t.Helper()
	for _, k := range mountNamespaceOptions {
		if _, ok := s[k]; ok {
			t.Errorf("%s: %s gives the unit its own mount namespace: the host would not see the spool", name, k)
		}
	}
	if got := s["KillMode"]; len(got) != 1 || got[0] != "mixed" {
		t.Errorf("%s: KillMode %q, want mixed (SIGTERM to spoolfs alone, which stops its command first)", name, got)
	}
	stop := s["ExecStop"]
	if len(stop) != 2 || !strings.Contains(stop[0], "kill -TERM $MAINPID") || !strings.Contains(stop[1], "--pid=$MAINPID") {
		t.Errorf("%s: ExecStop %q: want SIGTERM, then wait for spoolfs to exit (else systemd's own SIGTERM would force a lazy unmount)", name, stop)
	}
	if d := seconds(t, s["TimeoutStopSec"]); d < 100 {
		t.Errorf("%s: TimeoutStopSec %vs: want room for --stop-grace 60s + --unmount-timeout 10s + --flush-timeout 30s", name, d)
	}
	if !strings.Contains(strings.Join(s["DeviceAllow"], " "), "/dev/fuse rw") {
		t.Errorf("%s: DeviceAllow lacks /dev/fuse rw", name)
	}
	caps := strings.Join(s["CapabilityBoundingSet"], " ")
	if !strings.Contains(caps, "CAP_SYS_ADMIN") || strings.Contains(caps, "~") {
		t.Errorf("%s: CapabilityBoundingSet %q: want an allow list with CAP_SYS_ADMIN (mount)", name, caps)
	}
	if got := strings.Join(s["NoNewPrivileges"], ""); got != "yes" {
		t.Errorf("%s: NoNewPrivileges %q, want yes", name, got)
	}
}

func TestSystemdReplicaUnit(t *testing.T) {
	s := unitFile(t, "spoolfs-replica.service")["Service"]
	for k, want := range map[string]string{
		"ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateDevices": "yes",
		"DynamicUser": "yes", "StateDirectory": "spoolfs", "CapabilityBoundingSet": "",
	} {
		if got := s[k]; len(got) != 1 || got[0] != want {
			t.Errorf("spoolfs-replica.service: %s=%q, want %q", k, got, want)
		}
	}
	if !strings.Contains(strings.Join(s["ExecStart"], ""), "spoolfs replica --listen") {
		t.Errorf("spoolfs-replica.service: ExecStart does not run spoolfs replica")
	}
	if got := strings.Join(unitFile(t, "spoolfs-node.service")["Service"]["ExecStart"], ""); !strings.Contains(got, "spoolfs run -c /etc/spoolfs/node.yaml") {
		t.Errorf("spoolfs-node.service: ExecStart %q, want spoolfs run -c /etc/spoolfs/node.yaml", got)
	}
}

func seconds(t *testing.T, v []string) float64 {
	t.Helper()
	if len(v) != 1 {
		t.Fatalf("want one value, got %q", v)
	}
	d, err := time.ParseDuration(v[0])
	if err != nil {
		n, err2 := strconv.ParseFloat(v[0], 64)
		if err2 != nil {
			t.Fatalf("duration %q: %v", v[0], err)
		}
		return n
	}
	return d.Seconds()
}

// ---- the mount helper, for real ----

func TestMain(m *testing.M) { os.Exit(testsupport.Run(m)) }

// spoolfsBin is cmd/spoolfs, built once (testsupport.Binary).
func spoolfsBin(t *testing.T) string {
	t.Helper()
	return testsupport.Binary(t)
}

// requireMount ends the test unless it may mount FUSE here as root (the
// mount helper runs as root, as fstab's mounts do): testsupport's CI rule.
func requireMount(t *testing.T) {
	t.Helper()
	testsupport.SkipShort(t, "no mounts")
	testsupport.RequireRoot(t, "the mount helper")
	testsupport.RequireMount(t)
}

func mountSource(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && f[4] == dir {
			if i := strings.Index(l, " - "); i >= 0 {
				return strings.Join(strings.Fields(l[i+3:])[:2], " ")
			}
		}
	}
	return ""
}

// servers lists the spoolfs processes serving dir.
func servers(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(b, []byte("\x00"+dir+"\x00")) && bytes.Contains(b, []byte("mount")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func runHelper(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(sdDir, "mount.fuse.spoolfs"), args...)
	cmd.Env = append(os.Environ(), "SPOOLFS="+bin, "SPOOLFS_MOUNT_TIMEOUT=60")
	// A file, not a pipe: the spoolfs the helper leaves running keeps its
	// stderr, and os/exec would wait for a pipe to close.
	out, err := os.CreateTemp(t.TempDir(), "helper-out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	text, _ := os.ReadFile(out.Name())
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(text)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(text)
	}
	t.Fatalf("mount helper: %v", err)
	return 0, ""
}

func TestMountHelper(t *testing.T) {
	requireMount(t)
	bin := spoolfsBin(t)
	dir := t.TempDir()
	t.Cleanup(func() {
		if mountSource(t, dir) != "" {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
		for _, pid := range servers(dir) {
			unix.Kill(pid, unix.SIGKILL)
		}
	})
	// What fstab would say, as mount(8) passes it.
	code, out := runHelper(t, bin, "spoolfs:helper-vol", dir, "-o", "rw,local,allow_other,_netdev,noatime,log_level=warn")
	if code != 0 {
		t.Fatalf("mount helper: exit %d: %s", code, out)
	}
	if src := mountSource(t, dir); src != "fuse.spoolfs spoolfs:helper-vol" {
		t.Fatalf("mounted %q at %s, want fuse.spoolfs spoolfs:helper-vol", src, dir)
	}
	if err := os.WriteFile(filepath.Join(dir, "msg"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	if len(servers(dir)) != 1 {
		t.Fatalf("want one spoolfs serving %s, got %v", dir, servers(dir))
	}
	// umount is how fstab mounts end: spoolfs must then exit by itself.
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v: %s", err, out)
	}
	testsupport.WaitForErr(t, 20*time.Second, "spoolfs to exit after umount", func() error {
		if s := servers(dir); len(s) > 0 {
			return fmt.Errorf("still serving: %v", s)
		}
		return nil
	})
}

func TestMountHelperErrors(t *testing.T) {
	requireMount(t)
	bin := spoolfsBin(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"unknown option", []string{"spoolfs:v", dir, "-o", "local,frobnicate"}, "unknown option frobnicate"},
		{"unshare", []string{"spoolfs:v", dir, "-o", "local,unshare"}, "--unshare would hide it"},
		{"bad source", []string{"v", dir, "-o", "local"}, "want spoolfs:VOLUME"},
		{"missing dir", []string{"spoolfs:v", dir + "/nope", "-o", "local"}, "no such directory"},
		{"spoolfs refuses", []string{"spoolfs:v", dir}, "did not mount"},
		// tls_* reach spoolfs as --tls-*: it names the missing file.
		{"tls files", []string{"spoolfs:v", dir, "-o", "replicas=127.0.0.1:1+127.0.0.2:1+127.0.0.3:1,tls_ca=" + dir + "/none-ca.crt,tls_cert=" + dir + "/x.crt,tls_key=" + dir + "/x.key"}, "none-ca.crt"},
	} {
		start := time.Now()
		code, out := runHelper(t, bin, tc.args...)
		if code == 0 || !strings.Contains(out, tc.msg) {
			t.Errorf("%s: exit %d, output %q; want failure saying %q", tc.name, code, out, tc.msg)
		}
		if el := time.Since(start); el > 30*time.Second {
			t.Errorf("%s: took %v: a spoolfs that exits must not make the helper wait", tc.name, el)
		}
		if mountSource(t, dir) != "" || len(servers(dir)) > 0 {
			t.Fatalf("%s: left a mount or a spoolfs behind", tc.name)
		}
	}
}
