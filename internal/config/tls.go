package config

import (
	"fmt"

	"github.com/spoolfs/spoolfs/internal/tlsid"
)

// TLS is a node's mTLS material in its YAML config:
//
//	tls:
//	  ca: /etc/spoolfs/tls/ca.crt      # the cluster's CA (spoolfs certs ca)
//	  cert: /etc/spoolfs/tls/mx1.crt   # this node's certificate (spoolfs certs node)
//	  key: /etc/spoolfs/tls/mx1.key
//
// With it the replica service requires and verifies client certificates,
// the primary verifies the replicas', and a node's id is the common name
// of its certificate (replication/identity.go).
type TLS struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Files is the same as TLSFiles.
func (t TLS) Files() tlsid.Files { return tlsid.Files(t) }

// validateTLS checks the tls section and settles the node id: with mTLS
// it is the certificate's, and a node_id that names another node is an
// error (the replicas would refuse every call).
func (c *Node) validateTLS() error {
	f := c.TLS.Files()
	if !f.Enabled() {
		return nil
	}
	id, err := f.NodeID() // checks what Validate checks
	if err != nil {
		return err // names the file
	}
	switch c.NodeID {
	case "":
		c.NodeID = id
	case id:
	default:
		return fmt.Errorf("node_id: %q, but the certificate tls.cert names node %q (replicas take the node id from the certificate)", c.NodeID, id)
	}
	return nil
}
