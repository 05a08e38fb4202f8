package node

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/spoolfs/spoolfs/internal/config"
	"github.com/spoolfs/spoolfs/internal/tlsid"
	"github.com/spoolfs/spoolfs/replication"
)

// tlsCluster makes a CA, certificates for the named nodes (127.0.0.1) and
// returns their files.
func tlsCluster(t *testing.T, nodes ...string) (dir string, files map[string]tlsid.Files) {
	t.Helper()
	dir = t.TempDir()
	if err := tlsid.CreateCA(dir, "test CA", time.Hour); err != nil {
		t.Fatal(err)
	}
	files = map[string]tlsid.Files{}
	for _, n := range nodes {
		if err := tlsid.IssueNodeCert(dir, dir, n, []string{"127.0.0.1"}, time.Hour); err != nil {
			t.Fatal(err)
		}
		files[n] = tlsid.Files{CA: filepath.Join(dir, tlsid.CACertFile), Cert: filepath.Join(dir, n+".crt"), Key: filepath.Join(dir, n+".key")}
	}
	return dir, files
}

// TestMutualTLSCluster: three replicas serving over mTLS. A primary with
// its own certificate takes the volume and ships to all of them; a node
// presenting its own certificate under another node's id, and a client
// with no certificate, get nothing.
func TestMutualTLSCluster(t *testing.T) {
	_, files := tlsCluster(t, "r1", "r2", "r3", "p1", "evil")
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	var addrs []string
	for _, r := range []string{"r1", "r2", "r3"} {
		rep, err := StartReplica(ReplicaOptions{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Creds: material(t, files[r]).ServerCreds()}, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rep.Stop(context.Background()) })
		addrs = append(addrs, rep.Addr())
	}
	open := func(nodeID string, files tlsid.Files, plaintext bool) (*replication.Primary, error) {
		cfg := replication.PrimaryConfig{Volume: "mail", NodeID: nodeID, Replicas: addrs, Log: log,
			AcquireTimeout: 3 * time.Second, CallTimeout: time.Second}
		if plaintext {
			cfg.Creds = insecure.NewCredentials()
		} else {
			cfg.Creds = clientCreds(t, files)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p, _, err := replication.OpenPrimary(ctx, cfg)
		return p, err
	}

	if _, err := open("p1", files["evil"], false); err == nil || !strings.Contains(err.Error(), "claims to be") {
		t.Fatalf("a node claiming another node's id: %v, want a refusal naming the claim", err)
	}
	if _, err := open("p1", tlsid.Files{}, true); err == nil {
		t.Fatal("a client without TLS took the volume")
	}
	p, err := open("p1", files["p1"], false)
	if err != nil {
		t.Fatalf("the primary with its own certificate: %v", err)
	}
	defer p.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := p.Status()
		up := 0
		for _, r := range st.Replicas {
			if r.Connected {
				up++
			}
		}
		if up == len(addrs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ship streams over mTLS not up: %+v", st.Replicas)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, r := range QueryReplicas(context.Background(), addrs, clientCreds(t, files["p1"])) {
		if r.Err != "" || len(r.Volumes) != 1 || !strings.HasPrefix(r.Volumes[0].Holder, "p1/") {
			t.Errorf("replica %s: %+v, want volume mail held by p1", r.Addr, r)
		}
	}
}

// TestConfigTLSNodeID: with a tls section the node id is the certificate's;
// a node_id naming another node is refused, naming the field.
func TestConfigTLSNodeID(t *testing.T) {
	_, files := tlsCluster(t, "mx1")
	f := files["mx1"]
	tlsCfg := config.TLS(f)
	c := config.Node{Listen: "127.0.0.1:7400", DataDir: t.TempDir(), TLS: tlsCfg}
	if err := c.Validate(); err != nil || c.NodeID != "mx1" {
		t.Fatalf("validate: %v, node id %q, want mx1 from the certificate", err, c.NodeID)
	}
	c = config.Node{NodeID: "mx2", Listen: "127.0.0.1:7400", DataDir: t.TempDir(), TLS: tlsCfg}
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "node_id:") {
		t.Fatalf("node_id mx2 with mx1's certificate: %v, want an error naming node_id", err)
	}
	c = config.Node{Listen: "127.0.0.1:7400", DataDir: t.TempDir(), TLS: config.TLS{Cert: f.Cert}}
	if err := c.Validate(); err == nil {
		t.Fatal("a tls section with the certificate alone was accepted")
	}
}

// material loads f (the test fails if it cannot).
func material(t *testing.T, f tlsid.Files) *tlsid.Material {
	t.Helper()
	m, err := f.Material(nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// clientCreds is f's client credentials (the test fails if f cannot load).
func clientCreds(t *testing.T, f tlsid.Files) credentials.TransportCredentials {
	t.Helper()
	return material(t, f).ClientCreds()
}
