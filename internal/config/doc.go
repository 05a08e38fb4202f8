// Package config owns what a node is told to do: the YAML node
// configuration of `spoolfs run -c` (Node, Volume, TLS: strict decoding
// that names the field at fault, validation, defaults; docs/configuration.md
// describes every field) and the options of one mount (MountOptions: the
// `-o` strings, byte sizes, volume names, root mode and owner), which
// cmd/spoolfs fills from flags and node.Mount takes.
//
// It checks and fills values; it starts nothing and opens nothing but the
// config file (and, with mTLS, the certificate files whose common name is
// the node id: internal/tlsid).
//
// Strict decoding is yaml.v3's Decoder with KnownFields(true); decode.go
// rewrites its first error to name the line, the field path and what the
// field wants. Byte sizes are go-humanize's ParseBytes.
//
// May import: the standard library, yaml, go-humanize, internal/tlsid (and so grpc's
// credentials) and fsactor (the defaults of a mount, e.g. its watchdog);
// never replication or buntdb (internal/layout).
package config
