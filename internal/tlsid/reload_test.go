package tlsid

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// install copies the material of node id (CA from caDir, certificate and
// key from certDir) into live, each file renamed into place as a
// rotation does; only the named parts when parts is not empty.
func install(t *testing.T, caDir, certDir, id string, live Files, parts ...string) {
	t.Helper()
	src := nodeFiles(caDir, certDir, id)
	for _, p := range []struct{ name, from, to string }{{"ca", src.CA, live.CA}, {"cert", src.Cert, live.Cert}, {"key", src.Key, live.Key}} {
		if len(parts) > 0 && !strings.Contains(strings.Join(parts, ","), p.name) {
			continue
		}
		b, err := os.ReadFile(p.from)
		if err != nil {
			t.Fatal(err)
		}
		tmp := p.to + ".new"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p.to); err != nil {
			t.Fatal(err)
		}
	}
}

func liveFiles(dir string) Files {
	return Files{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, "node.crt"), Key: filepath.Join(dir, "node.key")}
}

// TestTLSReload: replacing a node's files changes the material its next
// handshakes use, as server and as client; files that do not fit together,
// or a certificate of another node, leave the material in use.
func TestTLSReload(t *testing.T) {
	old := tlsCheckEvery
	tlsCheckEvery = 0 // every handshake looks at the files
	t.Cleanup(func() { tlsCheckEvery = old })

	pki1, pki2 := t.TempDir(), t.TempDir()
	testPKI(t, pki1, "replica-1", "replica-2", "primary-a")
	testPKI(t, pki2, "replica-1", "primary-a") // another CA altogether
	srvLive, cliLive := liveFiles(t.TempDir()), liveFiles(t.TempDir())
	install(t, pki1, pki1, "replica-1", srvLive)
	install(t, pki1, pki1, "primary-a", cliLive)

	core, logs := observer.New(zapcore.InfoLevel)
	srvMat, err := srvLive.Material(zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	addr, seen := startHealthServerCreds(t, srvMat)
	cliMat, err := cliLive.Material(nil)
	if err != nil {
		t.Fatal(err)
	}
	client := cliMat.ClientCreds()
	if err := check(t, addr, client); err != nil {
		t.Fatalf("before any rotation: %v", err)
	}
	<-seen

	// A certificate without its key: the server keeps what it has.
	install(t, pki2, pki2, "replica-1", srvLive, "cert")
	if err := check(t, addr, client); err != nil {
		t.Fatalf("after a half-done rotation (the old material should stay): %v", err)
	}
	<-seen
	if n := logs.FilterMessageSnippet("cannot be used").Len(); n == 0 {
		t.Fatalf("no warning for files that do not fit together; logs: %v", logs.All())
	}

	// The server moves to the second CA: a client of the first is refused.
	install(t, pki2, pki2, "replica-1", srvLive)
	if err := check(t, addr, client); err == nil {
		t.Fatalf("a client of the old CA was accepted after the server's rotation")
	}
	noneSeen(t, seen)
	if logs.FilterMessage("tls material reloaded").Len() != 1 {
		t.Fatalf("want one reload logged; logs: %v", logs.All())
	}

	// The client moves too, with the same credentials object.
	install(t, pki2, pki2, "primary-a", cliLive)
	if err := check(t, addr, client); err != nil {
		t.Fatalf("after both rotated: %v", err)
	}
	if id := <-seen; id != "primary-a" {
		t.Fatalf("server saw %q", id)
	}

	// A certificate of another node is not this node's: kept as it was.
	before := logs.FilterMessageSnippet("cannot be used").Len()
	install(t, pki1, pki1, "replica-2", srvLive)
	if err := check(t, addr, client); err != nil {
		t.Fatalf("after a rotation to another node's certificate (the old material should stay): %v", err)
	}
	<-seen
	if got := logs.FilterMessageSnippet("cannot be used").All(); len(got) != before+1 || !strings.Contains(got[len(got)-1].ContextMap()["error"].(string), `names node "replica-2"`) {
		t.Fatalf("want a warning naming the other node; logs: %v", got)
	}

	// Status (what /metrics reports, node/metrics_test.go): the expiry of
	// the certificate in use (the second CA's replica-1), one reload used
	// and two kept out.
	r1 := nodeFiles(pki2, pki2, "replica-1")
	pair := loadPair(t, r1.Cert, r1.Key)
	st := srvMat.Status()
	if !st.NotAfter.Equal(pair.Leaf.NotAfter) || st.Reloads != 1 || st.Failures != 2 {
		t.Errorf("Status = %+v, want NotAfter %v, 1 reload, 2 failures", st, pair.Leaf.NotAfter)
	}
}
