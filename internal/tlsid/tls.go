package tlsid

// mTLS between nodes (DESIGN.md: "node identity from the certificate").
//
// Every node holds one certificate, signed by the cluster's CA, that it
// presents both as a server (replica) and as a client (primary): CN is the
// node id, the SANs are the node's host names and addresses, and the
// extended key usage allows both roles. `spoolfs certs ca` and `spoolfs
// certs node` make that material (CreateCA, IssueNodeCert);
// Files.Material loads it, and its gRPC transport credentials read the
// files again when they change (tls_reload.go): a certificate is rotated
// by replacing its files. replication.PeerIdentity reads a caller's node
// id on the serving side.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Names of the CA's files in its directory (CreateCA, IssueNodeCert).
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// clockSkew backdates NotBefore so that a node whose clock is a little
// behind the issuer's accepts a certificate made just now.
const clockSkew = 5 * time.Minute

// nodeIDPattern is what a node id (a certificate's CN) may look like: it
// names files (<id>.crt) and appears in logs and metrics.
var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// dnsLabel is one label of a DNS name in a certificate's SANs.
var dnsLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// Files names a node's mTLS material: PEM files. CA holds the
// certificate(s) of the cluster's CA, Cert the node's certificate (it may
// be followed by intermediates), Key its private key (PKCS#8, SEC 1 or
// PKCS#1). All three or none must be set.
type Files struct{ CA, Cert, Key string }

// Enabled reports whether any of the files is set (Validate then wants
// all three).
func (f Files) Enabled() bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

// Validate checks the material without starting anything: all three
// files or none; each readable and PEM; the certificate matches the key,
// is a node's (not a CA; its CN passes CheckNodeID), is valid now, and
// chains to the CA for both server and client use.
// Errors name the file at fault.
func (f Files) Validate() error {
	if !f.Enabled() {
		return nil
	}
	_, _, err := f.load()
	return err
}

// NodeID loads and checks the material (as Validate does) and returns the
// node id its certificate names: with mTLS a node's id is its
// certificate's.
func (f Files) NodeID() (string, error) {
	_, pair, err := f.load()
	if err != nil {
		return "", err
	}
	return NodeIdentity(pair.Leaf), nil
}

// NodeIdentity is the node id a verified certificate names: its
// Subject.CommonName ("" for nil).
func NodeIdentity(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	return cert.Subject.CommonName
}

// load reads and checks the three files (see Validate).
func (f Files) load() (*x509.CertPool, tls.Certificate, error) {
	var none tls.Certificate
	if f.CA == "" || f.Cert == "" || f.Key == "" {
		return nil, none, fmt.Errorf("tls: want all of the CA, certificate and key files, got CA=%q cert=%q key=%q", f.CA, f.Cert, f.Key)
	}
	cas, err := readCerts(f.CA)
	if err != nil {
		return nil, none, fmt.Errorf("tls CA: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	pair, err := loadKeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, none, err
	}
	if err := verifyNodeCert(pair, pool); err != nil {
		return nil, none, fmt.Errorf("tls certificate %s against CA %s: %w", f.Cert, f.CA, err)
	}
	return pool, pair, nil
}

// loadKeyPair reads a certificate and its key and checks they match.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls key: %w", err)
	}
	if _, err := parseCertsPEM(certPEM); err != nil {
		return tls.Certificate{}, fmt.Errorf("tls certificate %s: %w", certFile, err)
	}
	if _, err := parseKeyPEM(keyPEM); err != nil {
		return tls.Certificate{}, fmt.Errorf("tls key %s: %w", keyFile, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls key %s does not go with certificate %s: %w", keyFile, certFile, err)
	}
	return pair, nil
}

// verifyNodeCert checks that pair's leaf is a node's (not a CA, CN a node
// id) and that it (with the intermediates after it) chains to pool now,
// for server and for client use.
func verifyNodeCert(pair tls.Certificate, pool *x509.CertPool) error {
	if pair.Leaf.IsCA {
		return errors.New("a CA certificate, not a node's")
	}
	if err := CheckNodeID(NodeIdentity(pair.Leaf)); err != nil {
		return fmt.Errorf("its CN is not a node id: %w", err)
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("intermediate: %w", err)
		}
		inter.AddCert(c)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		_, err := pair.Leaf.Verify(x509.VerifyOptions{
			Roots:         pool,
			Intermediates: inter,
			KeyUsages:     []x509.ExtKeyUsage{usage},
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// readCerts reads a PEM file of one or more certificates.
func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := parseCertsPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// parseCertsPEM parses every CERTIFICATE block of b; there must be one.
func parseCertsPEM(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return certs, nil
}

// parseKeyPEM parses the first private key block of b.
func parseKeyPEM(b []byte) (crypto.Signer, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, errors.New("no PEM private key block")
		}
		var key any
		var err error
		switch blk.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("a %T cannot sign", key)
		}
		return s, nil
	}
}

// CheckNodeID reports whether id may be a node id: 1 to 63 letters,
// digits, '.', '_' or '-', starting with a letter or digit.
func CheckNodeID(id string) error {
	if !nodeIDPattern.MatchString(id) {
		return fmt.Errorf("node id %q: want 1 to 63 of A-Z a-z 0-9 . _ -, starting with a letter or digit", id)
	}
	return nil
}

// CheckHosts reports whether hosts may be a node certificate's SANs: at
// least one, each an IP address or a DNS name.
func CheckHosts(hosts []string) error {
	if len(hosts) == 0 {
		return errors.New("want at least one host name or IP address (peers dial it)")
	}
	for _, h := range hosts {
		if net.ParseIP(h) != nil {
			continue
		}
		if err := checkDNSName(h); err != nil {
			return err
		}
	}
	return nil
}

func checkDNSName(h string) error {
	if h == "" || len(h) > 253 {
		return fmt.Errorf("host %q: not an IP address or a DNS name", h)
	}
	for _, l := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if !dnsLabel.MatchString(l) {
			return fmt.Errorf("host %q: not an IP address or a DNS name", h)
		}
	}
	return nil
}

// CreateCA makes a cluster CA in dir (created 0700 if missing): a P-256
// key in dir/ca.key (0600) and a self-signed certificate named name in
// dir/ca.crt (0644), valid for validity. It refuses to overwrite either
// file (the error wraps fs.ErrExist) and writes nothing then.
func CreateCA(dir, name string, validity time.Duration) error {
	if validity <= 0 {
		return fmt.Errorf("create CA: validity %v: want > 0", validity)
	}
	if name == "" {
		name = "spoolfs CA"
	}
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	if err := refuseExisting(certPath, keyPath); err != nil {
		return fmt.Errorf("create CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("create CA: %w", err)
	}
	tmpl, err := certTemplate(name, time.Now(), validity)
	if err != nil {
		return fmt.Errorf("create CA: %w", err)
	}
	tmpl.IsCA = true
	tmpl.MaxPathLenZero = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("create CA: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create CA: %w", err)
	}
	return writePair(certPath, keyPath, der, key)
}

// IssueNodeCert signs a certificate for node nodeID with the CA in caDir
// (ca.crt, ca.key): a new P-256 key in outDir/<nodeID>.key (0600) and the
// certificate in outDir/<nodeID>.crt (0644), with CN nodeID, hosts as SANs
// (an IP address if one parses, else a DNS name), and extended key usage
// for both server and client auth, since every node is both. It is valid
// for validity, cut at the CA's own expiry. It refuses to overwrite either
// file (the error wraps fs.ErrExist) and writes nothing then.
func IssueNodeCert(caDir, outDir, nodeID string, hosts []string, validity time.Duration) error {
	if err := CheckNodeID(nodeID); err != nil {
		return fmt.Errorf("issue node certificate: %w", err)
	}
	if err := CheckHosts(hosts); err != nil {
		return fmt.Errorf("issue node certificate: %w", err)
	}
	if validity <= 0 {
		return fmt.Errorf("issue node certificate: validity %v: want > 0", validity)
	}
	caCert, caKey, err := loadCA(caDir)
	if err != nil {
		return fmt.Errorf("issue node certificate: %w", err)
	}
	certPath := filepath.Join(outDir, nodeID+".crt")
	keyPath := filepath.Join(outDir, nodeID+".key")
	if err := refuseExisting(certPath, keyPath); err != nil {
		return fmt.Errorf("issue node certificate: %w", err)
	}
	der, key, err := signNodeCert(caCert, caKey, nodeID, hosts, validity)
	if err != nil {
		return fmt.Errorf("issue node certificate: %w", err)
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return fmt.Errorf("issue node certificate: %w", err)
	}
	return writePair(certPath, keyPath, der, key)
}

// signNodeCert makes a node's key and its certificate signed by the CA.
func signNodeCert(caCert *x509.Certificate, caKey crypto.Signer, nodeID string, hosts []string, validity time.Duration) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	if end := caCert.NotAfter; now.Add(validity).After(end) {
		validity = end.Sub(now)
	}
	if validity <= 0 {
		return nil, nil, fmt.Errorf("the CA expired at %v", caCert.NotAfter)
	}
	tmpl, err := certTemplate(nodeID, now, validity)
	if err != nil {
		return nil, nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return nil, nil, err
	}
	return der, key, nil
}

// certTemplate is what CA and node certificates share: a random serial,
// CN, and a validity period starting a little before now.
func certTemplate(cn string, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		BasicConstraintsValid: true,
	}, nil
}

// loadCA reads caDir's certificate and key and checks they match.
func loadCA(caDir string) (*x509.Certificate, crypto.Signer, error) {
	certPath, keyPath := filepath.Join(caDir, CACertFile), filepath.Join(caDir, CAKeyFile)
	certs, err := readCerts(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key %s: %w", keyPath, err)
	}
	ca := certs[0]
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(ca.PublicKey) {
		return nil, nil, fmt.Errorf("CA key %s does not go with certificate %s", keyPath, certPath)
	}
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, fmt.Errorf("CA certificate %s: not a CA that may sign certificates", certPath)
	}
	return ca, key, nil
}

// refuseExisting fails (wrapping fs.ErrExist) if any path exists.
func refuseExisting(paths ...string) error {
	for _, p := range paths {
		_, err := os.Lstat(p)
		if err == nil {
			return fmt.Errorf("%s: %w (not overwriting)", p, fs.ErrExist)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// writePair writes a certificate (0644) and its key (0600) as PEM, each
// created exclusively and fsynced; if either fails, neither is left.
func writePair(certPath, keyPath string, der []byte, key crypto.Signer) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	if err := writeNewFile(keyPath, 0o600, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})); err != nil {
		return err
	}
	if err := writeNewFile(certPath, 0o644, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
		os.Remove(keyPath)
		return err
	}
	return nil
}

// writeNewFile creates path (never replacing a file), writes b and
// fsyncs; on error it removes what it created.
func writeNewFile(path string, mode os.FileMode, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
