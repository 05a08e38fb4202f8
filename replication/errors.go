package replication

import (
	"errors"
	"fmt"
	"strings"

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
)

// fencedPrefix starts the message of every status a replica returns for a
// stale term; isFenced recognises it on the primary side.
const fencedPrefix = "fenced: "

// rejectError is a refusal by the replica: a gRPC code and a reason.
type rejectError struct {
	code codes.Code
	msg  string
}

func (e *rejectError) Error() string { return e.msg }

// GRPCStatus lets status.FromError and the gRPC server see the code.
func (e *rejectError) GRPCStatus() *status.Status { return status.New(e.code, e.msg) }

func invalidf(format string, args ...any) error {
	return &rejectError{codes.InvalidArgument, fmt.Sprintf(format, args...)}
}

func preconditionf(format string, args ...any) error {
	return &rejectError{codes.FailedPrecondition, fmt.Sprintf(format, args...)}
}

func fencedError(term, accepted uint64) error {
	return preconditionf(fencedPrefix+"term %d < accepted %d", term, accepted)
}

// checkTerm is the fence every write to a replica passes.
func checkTerm(term, accepted uint64) error {
	if term < accepted {
		return fencedError(term, accepted)
	}
	if term > accepted {
		return preconditionf("term %d not acquired (accepted %d): call Acquire first", term, accepted)
	}
	return nil
}

// isFenced reports whether err is a replica's "fenced" answer.
func isFenced(err error) bool {
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.FailedPrecondition && strings.Contains(s.Message(), fencedPrefix)
}

// isRejection reports whether err is a replica refusing what it was sent
// (as opposed to the network or the replica failing).
func isRejection(err error) bool {
	s, ok := status.FromError(err)
	if !ok {
		return false
	}
	return s.Code() == codes.InvalidArgument || s.Code() == codes.FailedPrecondition
}
