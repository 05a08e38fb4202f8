package tlsid

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

const day = 24 * time.Hour

// testPKI makes a CA in dir and a certificate for each node id there,
// valid for 127.0.0.1 and localhost.
func testPKI(t *testing.T, dir string, ids ...string) {
	t.Helper()
	if err := CreateCA(dir, "test CA", day); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if err := IssueNodeCert(dir, dir, id, []string{"127.0.0.1", "localhost"}, day); err != nil {
			t.Fatal(err)
		}
	}
}

func nodeFiles(caDir, certDir, id string) Files {
	return Files{
		CA:   filepath.Join(caDir, CACertFile),
		Cert: filepath.Join(certDir, id+".crt"),
		Key:  filepath.Join(certDir, id+".key"),
	}
}

// startHealthServer serves grpc's health service with f's server
// credentials on a free loopback port; every call that reaches the service
// sends the caller's identity on the returned channel.
func startHealthServer(t *testing.T, f Files) (string, <-chan string) {
	t.Helper()
	return startHealthServerCreds(t, material(t, f))
}

// startHealthServerCreds is startHealthServer with m's server credentials.
func startHealthServerCreds(t *testing.T, m *Material) (string, <-chan string) {
	t.Helper()
	creds := m.ServerCreds()
	seen := make(chan string, 16)
	srv := grpc.NewServer(grpc.Creds(creds), grpc.UnaryInterceptor(
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			id := peerIdentity(ctx)
			seen <- id
			return h(ctx, req)
		}))
	healthpb.RegisterHealthServer(srv, grpchealth.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-served })
	return lis.Addr().String(), seen
}

// peerIdentity is the node id of the caller's verified certificate, as
// replication.PeerIdentity reads it on a replica; "<none>" without one.
func peerIdentity(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "<none>"
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return "<none>"
	}
	if id := NodeIdentity(ti.State.VerifiedChains[0][0]); id != "" {
		return id
	}
	return "<none>"
}

// check makes one health call to addr with creds.
func check(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if ctx.Err() != nil {
		t.Fatalf("health check to %s timed out (err %v)", addr, err)
	}
	return err
}

// material loads f (the test fails if it cannot).
func material(t *testing.T, f Files) *Material {
	t.Helper()
	m, err := f.Material(nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// loadPair loads a certificate and its key (the test fails if it cannot).
func loadPair(t *testing.T, certFile, keyFile string) tls.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func clientCreds(t *testing.T, f Files) credentials.TransportCredentials {
	t.Helper()
	return material(t, f).ClientCreds()
}

// noneSeen fails if a call reached the service.
func noneSeen(t *testing.T, seen <-chan string) {
	t.Helper()
	select {
	case id := <-seen:
		t.Errorf("a rejected client reached the service as %q", id)
	default:
	}
}

func TestTLSMutualAuth(t *testing.T) {
	dir := t.TempDir()
	testPKI(t, dir, "replica-1", "primary-a")
	addr, seen := startHealthServer(t, nodeFiles(dir, dir, "replica-1"))

	if err := check(t, addr, clientCreds(t, nodeFiles(dir, dir, "primary-a"))); err != nil {
		t.Fatalf("mTLS call: %v", err)
	}
	if id := <-seen; id != "primary-a" {
		t.Errorf("server saw client %q, want primary-a", id)
	}

	t.Run("other CA", func(t *testing.T) {
		other := t.TempDir()
		testPKI(t, other, "primary-a")
		// trusts the server's CA but presents a certificate of another CA
		f := Files{CA: filepath.Join(dir, CACertFile), Cert: filepath.Join(other, "primary-a.crt"), Key: filepath.Join(other, "primary-a.key")}
		if err := f.Validate(); err == nil {
			t.Error("Validate accepted a certificate of another CA")
		}
		creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: caPool(t, dir), Certificates: []tls.Certificate{loadPair(t, f.Cert, f.Key)}})
		if err := check(t, addr, creds); err == nil {
			t.Error("a client certificate of another CA was accepted")
		}
		noneSeen(t, seen)
		// and with its own CA's files the client does not trust the server
		if err := check(t, addr, clientCreds(t, nodeFiles(other, other, "primary-a"))); err == nil {
			t.Error("a client trusting another CA accepted the server")
		}
		noneSeen(t, seen)
	})

	t.Run("no client cert", func(t *testing.T) {
		creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: caPool(t, dir)})
		if err := check(t, addr, creds); err == nil {
			t.Error("a client without a certificate was accepted")
		}
		noneSeen(t, seen)
	})

	t.Run("TLS 1.2", func(t *testing.T) {
		pair := loadPair(t, filepath.Join(dir, "primary-a.crt"), filepath.Join(dir, "primary-a.key"))
		creds := credentials.NewTLS(&tls.Config{MaxVersion: tls.VersionTLS12, RootCAs: caPool(t, dir), Certificates: []tls.Certificate{pair}})
		if err := check(t, addr, creds); err == nil {
			t.Error("a TLS 1.2 client was accepted")
		}
		noneSeen(t, seen)
	})
}

// TestTLSServerName: the client checks the dial address against the
// server certificate's SANs.
func TestTLSServerName(t *testing.T) {
	dir := t.TempDir()
	testPKI(t, dir, "client")
	if err := IssueNodeCert(dir, dir, "elsewhere", []string{"10.1.2.3", "node.example"}, day); err != nil {
		t.Fatal(err)
	}
	addr, seen := startHealthServer(t, nodeFiles(dir, dir, "elsewhere"))
	if err := check(t, addr, clientCreds(t, nodeFiles(dir, dir, "client"))); err == nil {
		t.Error("client accepted a server certificate without 127.0.0.1 in its SANs")
	}
	noneSeen(t, seen)
}

func caPool(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	certs, err := readCerts(filepath.Join(dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool
}

func TestTLSFilesValidate(t *testing.T) {
	dir := t.TempDir()
	testPKI(t, dir, "a", "b")
	good := nodeFiles(dir, dir, "a")
	if !good.Enabled() || (Files{}).Enabled() {
		t.Error("Enabled is wrong")
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	if err := (Files{}).Validate(); err != nil {
		t.Errorf("Validate(none) = %v", err)
	}
	notPEM := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.crt")
	for _, tc := range []struct {
		name  string
		f     Files
		wants string // in the error
	}{
		{"key of another cert", Files{good.CA, good.Cert, filepath.Join(dir, "b.key")}, filepath.Join(dir, "b.key")},
		{"missing cert", Files{good.CA, missing, good.Key}, missing},
		{"missing CA", Files{missing, good.Cert, good.Key}, missing},
		{"CA not PEM", Files{notPEM, good.Cert, good.Key}, notPEM},
		{"key not PEM", Files{good.CA, good.Cert, notPEM}, notPEM},
		{"cert is the CA", Files{good.CA, good.CA, filepath.Join(dir, CAKeyFile)}, good.CA},
		{"only CA", Files{CA: good.CA}, "all of"},
		{"no key", Files{CA: good.CA, Cert: good.Cert}, "all of"},
	} {
		err := tc.f.Validate()
		if err == nil {
			t.Errorf("%s: Validate = nil", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.wants) {
			t.Errorf("%s: error %q does not name %q", tc.name, err, tc.wants)
		}
		if _, err := tc.f.Material(nil); err == nil {
			t.Errorf("%s: Material (the credentials' source) = nil error", tc.name)
		}
	}
}

func TestCreateCARefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	if err := CreateCA(dir, "", day); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := CreateCA(dir, "", day); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second CreateCA = %v, want fs.ErrExist", err)
	}
	// one file left over: still refused, and nothing written
	other := t.TempDir()
	keyPath := filepath.Join(other, CAKeyFile)
	if err := os.WriteFile(keyPath, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CreateCA(other, "", day); !errors.Is(err, fs.ErrExist) {
		t.Errorf("CreateCA over a lone ca.key = %v, want fs.ErrExist", err)
	}
	if _, err := os.Stat(filepath.Join(other, CACertFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ca.crt written after a refusal: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	if string(after) != string(before) {
		t.Error("ca.crt changed")
	}
	checkModes(t, dir, "ca")
}

func checkModes(t *testing.T, dir, base string) {
	t.Helper()
	for name, want := range map[string]os.FileMode{base + ".key": 0o600, base + ".crt": 0o644} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got&^want != 0 || (strings.HasSuffix(name, ".key") && got != 0o600) {
			t.Errorf("%s: mode %v, want %v", name, got, want)
		}
	}
}

func TestIssueNodeCert(t *testing.T) {
	caDir, out := t.TempDir(), filepath.Join(t.TempDir(), "certs")
	if err := CreateCA(caDir, "c", 2*day); err != nil {
		t.Fatal(err)
	}
	hosts := []string{"10.0.0.7", "::1", "replica-1.example"}
	if err := IssueNodeCert(caDir, out, "replica-1", hosts, 365*day); err != nil {
		t.Fatal(err)
	}
	checkModes(t, out, "replica-1")
	certs, err := readCerts(filepath.Join(out, "replica-1.crt"))
	if err != nil {
		t.Fatal(err)
	}
	c := certs[0]
	if NodeIdentity(c) != "replica-1" {
		t.Errorf("identity %q", NodeIdentity(c))
	}
	if len(c.IPAddresses) != 2 || !c.IPAddresses[0].Equal(net.ParseIP("10.0.0.7")) || len(c.DNSNames) != 1 || c.DNSNames[0] != "replica-1.example" {
		t.Errorf("SANs: IPs %v DNS %v", c.IPAddresses, c.DNSNames)
	}
	if len(c.ExtKeyUsage) != 2 {
		t.Errorf("ExtKeyUsage %v, want server and client auth", c.ExtKeyUsage)
	}
	if c.NotAfter.After(time.Now().Add(2 * day)) {
		t.Errorf("node certificate outlives its CA: %v", c.NotAfter)
	}
	if err := nodeFiles(caDir, out, "replica-1").Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if err := IssueNodeCert(caDir, out, "replica-1", hosts, day); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second IssueNodeCert = %v, want fs.ErrExist", err)
	}
	for _, tc := range []struct {
		id    string
		hosts []string
	}{
		{"../x", hosts}, {"", hosts}, {"-a", hosts}, {"a/b", hosts}, {strings.Repeat("a", 64), hosts},
		{"ok", nil}, {"ok", []string{""}}, {"ok", []string{"bad host"}}, {"ok", []string{"a..b"}},
	} {
		if err := IssueNodeCert(caDir, out, tc.id, tc.hosts, day); err == nil {
			t.Errorf("IssueNodeCert(%q, %q) = nil", tc.id, tc.hosts)
		}
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 2 {
		t.Errorf("refused calls wrote files: %d entries in %s", len(entries), out)
	}
	if err := IssueNodeCert(t.TempDir(), out, "x", hosts, day); err == nil || !strings.Contains(err.Error(), CACertFile) {
		t.Errorf("IssueNodeCert without a CA = %v", err)
	}
}
