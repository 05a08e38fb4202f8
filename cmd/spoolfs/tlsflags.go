package main

import (
	"github.com/spf13/pflag"

	"github.com/spoolfs/spoolfs/internal/config"
)

// tlsFlags are the mTLS flags of every command that talks to other nodes
// (files made by `spoolfs certs`).
type tlsFlags struct{ ca, cert, key string }

func addTLSFlags(fl *pflag.FlagSet, t *tlsFlags) {
	fl.StringVar(&t.ca, "tls-ca", "", "mTLS: the cluster's CA certificate (PEM; spoolfs certs ca)")
	fl.StringVar(&t.cert, "tls-cert", "", "mTLS: this node's certificate (PEM; its common name is the node id)")
	fl.StringVar(&t.key, "tls-key", "", "mTLS: this node's private key (PEM)")
}

func (t tlsFlags) config() config.TLS { return config.TLS{CA: t.ca, Cert: t.cert, Key: t.key} }

// tlsFlagNames are the flags addTLSFlags adds.
var tlsFlagNames = []string{"tls-ca", "tls-cert", "tls-key"}
