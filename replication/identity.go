package replication

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Node identity (DESIGN.md, Replication: "mTLS, node identity from the
// certificate; only the volume's current term holder may write").
//
// Over mTLS a caller's node id is the common name of the certificate it
// proved it holds, and the node id a call claims — the first part of the
// holder string "NODE/random" that Acquire, Ship and Install carry — must
// be that one: a node cannot take or write a volume under another node's
// name. Over plaintext (loopback, tests) there is no identity to check.
// Whatever the transport, Ship and Install must come from the holder that
// acquired the volume's current term (writableBy).

// PeerIdentity is the node id of the caller of a gRPC call served over
// mTLS: the common name of the certificate it proved it holds; false when
// the connection carries no verified certificate.
func PeerIdentity(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return "", false
	}
	id := ti.State.VerifiedChains[0][0].Subject.CommonName
	return id, id != ""
}

// checkClaim refuses a call whose claimed holder names a node other than
// the caller's certificate.
func checkClaim(ctx context.Context, holder string) error {
	id, ok := PeerIdentity(ctx)
	if !ok {
		return nil
	}
	if node, _, _ := strings.Cut(holder, "/"); node != id {
		return status.Errorf(codes.PermissionDenied, "node %q (by its certificate) claims to be %q", id, node)
	}
	return nil
}

// writableBy says whether holder, writing under term, may ship records or
// install a snapshot now: the volume is usable, the term is the accepted
// one, and holder is who acquired it (caller holds v.mu).
func (v *volume) writableBy(term uint64, holder string) error {
	if err := v.usable(); err != nil {
		return err
	}
	if err := checkTerm(term, v.accepted); err != nil {
		return err
	}
	if v.holder != "" && holder != v.holder {
		return status.Errorf(codes.PermissionDenied, "volume %q: term %d is held by %q, not %q", v.name, term, v.holder, holder)
	}
	return nil
}
