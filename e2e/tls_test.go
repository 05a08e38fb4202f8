package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMutualTLS: certificates made by `spoolfs certs`; replicas and the
// primary talk mTLS; a close returns once two replicas hold the file;
// status over mTLS shows the volume held by the primary's node id; a
// client without certificates gets nothing, and a primary asked to claim
// another node's id with its certificate refuses to start.
func TestMutualTLS(t *testing.T) {
	requireCluster(t)
	certs := t.TempDir()
	spoolfs(t, 0, "certs", "ca", "--dir", certs)
	for _, id := range []string{"r1", "r2", "r3", "mx1"} {
		spoolfs(t, 0, "certs", "node", "--ca", certs, "--id", id, "--host", "127.0.0.1")
	}
	tlsArgs := func(id string) []string {
		return []string{"--tls-ca", filepath.Join(certs, "ca.crt"),
			"--tls-cert", filepath.Join(certs, id+".crt"), "--tls-key", filepath.Join(certs, id+".key")}
	}
	c := newClusterWith(t, 3, func(i int) []string { return tlsArgs(fmt.Sprintf("r%d", i+1)) })

	pr := c.startPrimary("mtls", "mx1", tlsArgs("mx1")...)
	body := bytes.Repeat([]byte("over mTLS "), 200)
	if err := os.WriteFile(pr.path("msg"), body, 0o640); err != nil {
		t.Fatalf("write through the mTLS primary: %v", err)
	}
	out := spoolfs(t, 0, append([]string{"status", "--replicas", c.addrs()}, tlsArgs("mx1")...)...)
	if strings.Count(out, "mx1/") != 3 {
		t.Errorf("status over mTLS: want the volume held by mx1 on 3 replicas:\n%s", out)
	}
	if out := spoolfs(t, 1, "status", "--replicas", c.addrs(), "--timeout", "2s"); strings.Contains(out, "mx1/") {
		t.Errorf("status without certificates got answers:\n%s", out)
	}
	args := append(primaryArgs("mtls", t.TempDir(), c.addrs(), "mx2", tlsArgs("mx1")), "--acquire-timeout", "2s")
	if out := spoolfs(t, 2, args...); !strings.Contains(out, "--node-id") {
		t.Errorf("a primary claiming mx2 with mx1's certificate: want a refusal naming --node-id, got:\n%s", out)
	}
	pr.stop(t)
}

// spoolfs runs the binary to its end and wants exit status code; it
// returns stdout and stderr together.
func spoolfs(t *testing.T, code int, args ...string) string {
	t.Helper()
	cmd := exec.Command(binPath(), args...)
	out, err := cmd.CombinedOutput()
	got := 0
	if ee, ok := err.(*exec.ExitError); ok {
		got = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("spoolfs %s: %v", strings.Join(args, " "), err)
	}
	if got != code {
		t.Fatalf("spoolfs %s: exit %d, want %d\n%s", strings.Join(args, " "), got, code, out)
	}
	return string(out)
}
