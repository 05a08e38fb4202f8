package replication

import (
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/grpc/codes"
)

// The version of the replication protocol. A primary and a replica of
// different releases talk only when each speaks a version the other
// supports, so that a rolling upgrade (docs/operations.md, "Rolling
// upgrade") never lets a peer take for something else what it cannot
// read.
//
// A release that changes the wire meaning of a message raises
// ProtocolVersion and keeps MinProtocolVersion at the version before for
// one release at least: its replicas still serve the old primaries while
// the primaries are upgraded after them, one host at a time.
//
// Versions:
//   - 1: data records state a file's whole content (extents and data).
//   - 2: data records may be partial (Record.Partial and Ranges, proto
//     fields 16 and 18): only the ranges changed since the file's previous
//     data record. A version-2 primary speaks version 2 only, so a
//     version-1 replica refuses it (PROTOCOL_VERSION) and never receives a
//     partial record it would reject; the primary does not fall back to
//     whole records for it, since one stream of whole records among
//     partial ones would cost every close the file's size again and keep
//     two ways of shipping alive. Replicas of version 2 still serve
//     version-1 primaries (MinProtocolVersion 1). Upgrade replicas first
//     (docs/operations.md, "Rolling upgrade").
const (
	// ProtocolVersion is the version this build speaks, sent in the first
	// message of each conversation and in a replica's first answer.
	ProtocolVersion uint32 = 2
	// MinProtocolVersion is the oldest version this build serves.
	MinProtocolVersion uint32 = 1
)

// ErrProtocolVersion: a replica speaks a protocol version this primary
// does not support (or refused this primary's). Upgrade the older side.
var ErrProtocolVersion = errors.New("replication: protocol version not supported")

// reasonProtocolVersion: the ErrorInfo reason of a refusal by version.
// Metadata: peer (the version the peer sent), min and max (the range the
// refusing side supports).
const reasonProtocolVersion = "PROTOCOL_VERSION"

// versionRange is the range of protocol versions one side supports; its
// zero value is this build's (tests set others to play an older or a
// newer release).
type versionRange struct{ min, max uint32 }

func (r versionRange) orDefault() versionRange {
	if r.max == 0 {
		return versionRange{min: MinProtocolVersion, max: ProtocolVersion}
	}
	return r
}

// speaks is the version a primary sends: its newest. A replica answers
// in the version it was asked in (peerVersion), so that replicas upgraded
// first still serve the primaries not upgraded yet.
func (r versionRange) speaks() uint32 { return r.orDefault().max }

// peerVersion is the version a peer sent; 0, from a peer older than the
// field, means 1.
func peerVersion(v uint32) uint32 { return max(v, 1) }

// check refuses a peer's version outside the range: a status error
// (FAILED_PRECONDITION, reason PROTOCOL_VERSION) that also matches
// ErrProtocolVersion. who names the peer for the message; 0 from a peer
// older than the field means 1.
func (r versionRange) check(peer uint32, who string) error {
	r, peer = r.orDefault(), peerVersion(peer)
	if peer >= r.min && peer <= r.max {
		return nil
	}
	return &rejectError{code: codes.FailedPrecondition, reason: reasonProtocolVersion, is: ErrProtocolVersion,
		meta: map[string]string{"peer": strconv.FormatUint(uint64(peer), 10),
			"min": strconv.FormatUint(uint64(r.min), 10), "max": strconv.FormatUint(uint64(r.max), 10)},
		msg: fmt.Sprintf("protocol version %d of %s not supported here (versions %d to %d): "+
			"upgrade the older side, replicas before primaries (docs/operations.md, \"Rolling upgrade\")",
			peer, who, r.min, r.max)}
}

// isVersionRefusal reports whether err is a refusal by protocol version,
// from either side.
func isVersionRefusal(err error) bool {
	return errors.Is(err, ErrProtocolVersion) || reasonOf(err) == reasonProtocolVersion
}
