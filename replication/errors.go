package replication

import (
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors of the primary side, wrapped with context; test them with
// errors.Is. node maps ErrFenced to fsactor.ErrFenced and the others to
// fsactor.ErrNotDurable.
var (
	// ErrFenced: a replica holds a newer term; this primary must stop.
	ErrFenced = errors.New("replication: fenced by a newer term")
	// ErrNoQuorum: fewer than W replicas acknowledged (or granted) in time.
	ErrNoQuorum = errors.New("replication: no quorum")
	// ErrClosed: the primary was closed.
	ErrClosed = errors.New("replication: primary closed")
	// ErrAcquireTimeout: OpenPrimary did not take the term and recover the
	// volume within PrimaryConfig.AcquireTimeout (wraps what failed last).
	ErrAcquireTimeout = errors.New("replication: acquire timeout")
)

// The refusals of a replica that the primary acts on carry a reason in an
// errdetails.ErrorInfo of their status (domain errorDomain). The primary
// reads the reason (reasonOf), never the message, which is for people.
const (
	errorDomain = "replication.spoolfs.io"
	// reasonFenced: the term is below the one the replica accepted; its
	// primary must stop. Metadata: term, accepted.
	reasonFenced = "FENCED"
	// reasonNotAcquired: the term is above the one the replica accepted;
	// the primary must Acquire it there first. Metadata: term, accepted.
	reasonNotAcquired = "NOT_ACQUIRED"
	// reasonWatchResync: a Watch cannot stream from the follower's
	// position (the replica's watch ring no longer covers it, or holds
	// another history there); the follower must load a snapshot.
	// Metadata: from_lsn, from_term, replica_lsn, replica_term.
	reasonWatchResync = "WATCH_RESYNC"
	// reasonWatchDisabled: the replica serves no Watch (its watch buffer
	// is 0); the follower watches another replica.
	reasonWatchDisabled = "WATCH_DISABLED"
)

// rejectError is a refusal by the replica: a gRPC code, a reason for the
// primary (may be empty) and a message.
type rejectError struct {
	code   codes.Code
	reason string
	meta   map[string]string
	msg    string
	is     error // a sentinel it also matches (errors.Is), or nil
}

func (e *rejectError) Error() string { return e.msg }

// Unwrap lets errors.Is match the sentinel of a refusal, if it has one.
func (e *rejectError) Unwrap() error { return e.is }

// GRPCStatus lets status.FromError and the gRPC server see the code and
// the reason.
func (e *rejectError) GRPCStatus() *status.Status {
	st := status.New(e.code, e.msg)
	if e.reason == "" {
		return st
	}
	withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: e.reason, Domain: errorDomain, Metadata: e.meta})
	if err != nil {
		return st // cannot happen: ErrorInfo always marshals
	}
	return withInfo
}

func invalidf(format string, args ...any) error {
	return &rejectError{code: codes.InvalidArgument, msg: fmt.Sprintf(format, args...)}
}

func preconditionf(format string, args ...any) error {
	return &rejectError{code: codes.FailedPrecondition, msg: fmt.Sprintf(format, args...)}
}

// termError is a refusal of term because the replica accepted another.
func termError(reason string, term, accepted uint64, format string, args ...any) error {
	return &rejectError{code: codes.FailedPrecondition, reason: reason, msg: fmt.Sprintf(format, args...),
		meta: map[string]string{"term": strconv.FormatUint(term, 10), "accepted": strconv.FormatUint(accepted, 10)}}
}

func fencedError(term, accepted uint64) error {
	return termError(reasonFenced, term, accepted, "fenced: term %d < accepted %d", term, accepted)
}

// checkTerm is the fence every write to a replica passes.
func checkTerm(term, accepted uint64) error {
	if term < accepted {
		return fencedError(term, accepted)
	}
	if term > accepted {
		return termError(reasonNotAcquired, term, accepted, "term %d not acquired (accepted %d): call Acquire first", term, accepted)
	}
	return nil
}

// reasonOf is the reason a replica gave for refusing (errorDomain's
// ErrorInfo in err's status), or "".
func reasonOf(err error) string {
	s, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == errorDomain {
			return info.Reason
		}
	}
	return ""
}

// isFenced reports whether err is a replica's "fenced" answer.
func isFenced(err error) bool { return reasonOf(err) == reasonFenced }

// isNotAcquired reports whether err is a replica's "term not acquired"
// answer.
func isNotAcquired(err error) bool { return reasonOf(err) == reasonNotAcquired }

// IsWatchResync reports whether err is a replica's answer to a Watch
// that it cannot stream from the position asked: the follower loads a
// snapshot and watches from there.
func IsWatchResync(err error) bool { return reasonOf(err) == reasonWatchResync }

// isRejection reports whether err is a replica refusing what it was sent
// (as opposed to the network or the replica failing).
func isRejection(err error) bool {
	s, ok := status.FromError(err)
	if !ok {
		return false
	}
	return s.Code() == codes.InvalidArgument || s.Code() == codes.FailedPrecondition
}
