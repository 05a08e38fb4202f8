package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/tlsid"
)

// runCmd executes the command line and returns its output.
func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestCertsCommand(t *testing.T) {
	base := t.TempDir()
	ca, out := filepath.Join(base, "pki"), filepath.Join(base, "node-certs")
	if msg, err := runCmd(t, "certs", "ca", "--dir", ca, "--days", "30"); err != nil {
		t.Fatalf("certs ca: %v\n%s", err, msg)
	}
	msg, err := runCmd(t, "certs", "node", "--ca", ca, "--id", "replica-1", "--host", "127.0.0.1,replica-1.example", "--out", out)
	if err != nil {
		t.Fatalf("certs node: %v\n%s", err, msg)
	}
	files := tlsid.Files{
		CA:   filepath.Join(ca, "ca.crt"),
		Cert: filepath.Join(out, "replica-1.crt"),
		Key:  filepath.Join(out, "replica-1.key"),
	}
	if want := "--tls-ca " + files.CA + " --tls-cert " + files.Cert + " --tls-key " + files.Key; !strings.Contains(msg, want) {
		t.Errorf("certs node printed %q, want it to contain %q", msg, want)
	}
	for _, p := range []string{files.Key, filepath.Join(ca, "ca.key")} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, st.Mode().Perm())
		}
	}
	if err := files.Validate(); err != nil {
		t.Errorf("the written files do not validate: %v", err)
	}
	// --out defaults to the CA's directory
	if msg, err := runCmd(t, "certs", "node", "--ca", ca, "--id", "p1", "--host", "localhost"); err != nil {
		t.Fatalf("certs node without --out: %v\n%s", err, msg)
	}
	if _, err := os.Stat(filepath.Join(ca, "p1.key")); err != nil {
		t.Error(err)
	}
	// refusing to overwrite is a failure, not a usage error
	if got := run([]string{"certs", "ca", "--dir", ca}); got != 1 {
		t.Errorf("certs ca over an existing CA: exit status %d, want 1", got)
	}
}

// TestCertsUsage: bad input is a usage error naming the flag, and nothing
// is written.
func TestCertsUsage(t *testing.T) {
	ca := t.TempDir()
	if err := tlsid.CreateCA(ca, "", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	for _, tc := range []struct {
		args  []string
		wants string
	}{
		{[]string{"certs", "node", "--ca", ca, "--id", "../evil", "--host", "h", "--out", out}, "--id"},
		{[]string{"certs", "node", "--ca", ca, "--id", "a b", "--host", "h", "--out", out}, "--id"},
		{[]string{"certs", "node", "--ca", ca, "--id", "n", "--host", "bad host", "--out", out}, "--host"},
		{[]string{"certs", "node", "--ca", ca, "--id", "n", "--out", out}, "want --host H[,H...] ("},
		{[]string{"certs", "node", "--ca", ca, "--id", "n", "--host", "h", "--days", "0", "--out", out}, "--days"},
		{[]string{"certs", "node", "--id", "n", "--host", "h", "--out", out}, "want --ca DIR ("},
		{[]string{"certs", "node", "--ca", ca, "--out", out}, "want --id NODEID and --host"},
		{[]string{"certs", "bogus"}, "unknown command"},
		{[]string{"certs", "ca", "--dir", out, "--days", "-1"}, "--days"},
		{[]string{"certs", "ca"}, "--dir"},
		{[]string{"certs", "ca", "--dir", out, "extra"}, "unknown command"},
		{[]string{"certs", "node", "--bogus"}, "--bogus"},
	} {
		_, err := runCmd(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.wants) {
			t.Errorf("spoolfs %s: error %v, want one naming %s", strings.Join(tc.args, " "), err, tc.wants)
		}
		if got := run(tc.args); got != 2 {
			t.Errorf("spoolfs %s: exit status %d, want 2", strings.Join(tc.args, " "), got)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused command wrote %s (%v)", out, err)
	}
}
