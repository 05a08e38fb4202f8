package tlsid

// Certificate rotation without a restart. A node's TLS material is read
// again when one of its files changes (size, modification time or inode:
// a rename over it, a Kubernetes secret's symlink swap, cert-manager's
// renewal), checked at most once a second and only when a connection is
// made: the material is used in handshakes, and a connection keeps the
// certificates it was made with. New connections — a primary's links
// reconnect with backoff after any failure — use the new material.
//
// Files are seldom replaced all at once: a certificate may be in place
// before its key. A reload that does not pass the checks of
// Files.Validate, or whose certificate names another node (the node id
// is the certificate's CN and does not change while the node runs), keeps
// the material in use and logs why; the next change is tried again.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/credentials"
)

// tlsCheckEvery bounds how often the files are looked at (a variable for
// the tests).
var tlsCheckEvery = time.Second

// Material is a node's loaded mTLS material, reloaded when its files
// change. Its ServerCreds and ClientCreds read it at each handshake.
type Material struct {
	files Files
	id    string // the node id, fixed at load

	mu       sync.Mutex
	log      *zap.Logger
	pool     *x509.CertPool
	cert     tls.Certificate
	sig      [3]fileSig // of the files as last looked at
	checked  time.Time
	reloads  uint64 // material replaced
	failures uint64 // changes that could not be used
}

// Status describes the material in use, for metrics.
type Status struct {
	NotAfter          time.Time // the expiry of the certificate this node presents
	Reloads, Failures uint64    // reloads done, and changed files that could not be used
}

// Status reports the material in use.
func (m *Material) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Status{NotAfter: m.cert.Leaf.NotAfter, Reloads: m.reloads, Failures: m.failures}
}

// fileSig tells whether a file changed.
type fileSig struct {
	size  int64
	mtime int64
	ino   uint64
	err   bool
}

func sigOf(path string) fileSig {
	fi, err := os.Stat(path)
	if err != nil {
		return fileSig{err: true}
	}
	s := fileSig{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	return s
}

func (f Files) sigs() [3]fileSig {
	return [3]fileSig{sigOf(f.CA), sigOf(f.Cert), sigOf(f.Key)}
}

// Material loads the files (see Validate); log hears about reloads (nil:
// nothing is logged). Without TLS (no file named) it is nil, whose
// credentials are nil: plaintext.
func (f Files) Material(log *zap.Logger) (*Material, error) {
	if !f.Enabled() {
		return nil, nil
	}
	sig := f.sigs()
	pool, cert, err := f.load()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Material{files: f, id: NodeIdentity(cert.Leaf), log: log, pool: pool, cert: cert, sig: sig, checked: time.Now()}, nil
}

// SetLogger sets where reloads are logged (the logger may be made after
// the material).
func (m *Material) SetLogger(log *zap.Logger) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.log = log
	m.mu.Unlock()
}

// current returns the material to use now, reloading it first if its
// files changed.
func (m *Material) current() (*x509.CertPool, tls.Certificate) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now := time.Now(); now.Sub(m.checked) >= tlsCheckEvery {
		m.checked = now
		if sig := m.files.sigs(); sig != m.sig {
			m.sig = sig
			m.reloadLocked()
		}
	}
	return m.pool, m.cert
}

func (m *Material) reloadLocked() {
	pool, cert, err := m.files.load()
	if err == nil && NodeIdentity(cert.Leaf) != m.id {
		err = fmt.Errorf("tls certificate %s names node %q, and this node runs as %q (restart it to change its id)", m.files.Cert, NodeIdentity(cert.Leaf), m.id)
	}
	if err != nil {
		m.failures++
		m.log.Warn("tls files changed but cannot be used: keeping the certificates in use until they change again", zap.Error(err))
		return
	}
	m.pool, m.cert = pool, cert
	m.reloads++
	m.log.Info("tls material reloaded", zap.String("cert", m.files.Cert), zap.String("serial", cert.Leaf.SerialNumber.String()),
		zap.Time("not_after", cert.Leaf.NotAfter))
}

// ServerCreds are the credentials of a node serving gRPC: it presents its
// certificate, wants TLS 1.3, and requires a client certificate that
// chains to the CA (with client-auth usage). The caller reads the
// client's identity with replication.PeerIdentity.
func (m *Material) ServerCreds() credentials.TransportCredentials {
	if m == nil {
		return nil
	}
	return &reloadingCreds{m: m, server: true}
}

// ClientCreds are the credentials of a node dialing another: it verifies
// the server's certificate against the CA (and, through grpc's
// credentials.NewTLS, the host name or IP of the dial address against the
// certificate's SANs), presents its certificate, and wants TLS 1.3.
func (m *Material) ClientCreds() credentials.TransportCredentials {
	if m == nil {
		return nil
	}
	return &reloadingCreds{m: m}
}

// reloadingCreds make grpc's own TLS credentials from the material of the
// moment for each handshake.
type reloadingCreds struct {
	m          *Material
	server     bool
	serverName string
}

func (c *reloadingCreds) now() credentials.TransportCredentials {
	pool, cert := c.m.current()
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}
	if c.server {
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, pool
	} else {
		cfg.RootCAs, cfg.ServerName = pool, c.serverName
	}
	return credentials.NewTLS(cfg)
}

func (c *reloadingCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.now().ClientHandshake(ctx, authority, conn)
}

func (c *reloadingCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.now().ServerHandshake(conn)
}

func (c *reloadingCreds) Info() credentials.ProtocolInfo {
	return credentials.NewTLS(&tls.Config{ServerName: c.serverName}).Info()
}

func (c *reloadingCreds) Clone() credentials.TransportCredentials {
	cp := *c
	return &cp
}

// OverrideServerName implements the (deprecated) interface method.
func (c *reloadingCreds) OverrideServerName(name string) error {
	c.serverName = name
	return nil
}
