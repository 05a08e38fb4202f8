package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunUsageErrors: mistakes in the flags or the config of run, replica
// and status are usage errors (exit 2) and start nothing.
func TestRunUsageErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("volumes:\n  - name: v\n    mount_point: /m\n    replicas: [a:1, b:1, c:1]\n    w: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"run"},
		{"run", "extra"},
		{"run", "-c", bad},
		{"run", "-c", filepath.Join(dir, "missing.yaml")},
		{"run", "-c", bad, "--admin", "127.0.0.1:0"},
		{"run", "-c", bad, "--embedded"},
		{"run", "--embedded"},
		{"run", "--embedded", "--mount", dir, "--replicas", "a:1"},
		{"run", "--embedded", "--mount", dir, "--w", "4"},
		{"run", "--embedded", "--mount", dir, "-o", "ro"},
		{"run", "--volume", "v", "--mount", dir, "--replicas", "a:1,b:1,c:1", "--w", "1"},
		{"run", "--volume", "v", "--mount", dir},
		{"run", "--listen", "127.0.0.1:7400"},
		{"run", "--data", dir},
		{"run", "--volume", "v", "--mount", dir, "--replicas", "a:1,b:1,c:1", "-o", "bogus"},
		{"replica"},
		{"replica", "--listen", "127.0.0.1:0"},
		{"status", "--admin", "127.0.0.1:1", "--replicas", "a:1"},
	} {
		if got := run(args); got != 2 {
			t.Errorf("spoolfs %s: exit status %d, want 2", strings.Join(args, " "), got)
		}
	}
}

// TestStatusUnreachable: status of a node that does not answer is a
// failure (1), not a usage error.
func TestStatusUnreachable(t *testing.T) {
	if got := run([]string{"status", "--admin", "127.0.0.1:1", "--timeout", "1s"}); got != 1 {
		t.Errorf("status of nothing: exit status %d, want 1", got)
	}
	if got := run([]string{"status", "--replicas", "127.0.0.1:1", "--timeout", "1s"}); got != 1 {
		t.Errorf("status --replicas of nothing: exit status %d, want 1", got)
	}
}
