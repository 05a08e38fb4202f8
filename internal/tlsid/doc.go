// Package tlsid owns a node's mTLS material and identity (DESIGN.md:
// "mTLS, node identity from the certificate"): the cluster CA and node
// certificates that `spoolfs certs` makes (CreateCA, IssueNodeCert), the
// checks a node id and host names pass (CheckNodeID, CheckHosts), loading
// and checking the three files of a node (Files.Validate, Files.NodeID),
// the node id a certificate names (NodeIdentity), and gRPC transport
// credentials that read the files again when they change (Material:
// certificate rotation without a restart, reload.go).
//
// The serving side's check of a caller's identity is replication's
// (replication/identity.go); where the files come from is the node
// config's or the command line's.
//
// May import: the standard library, grpc's credentials and zap; nothing
// of this module (internal/layout). It starts no goroutine.
package tlsid
