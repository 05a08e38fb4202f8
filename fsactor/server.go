package fsactor

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/jacobsa/fuse"
	"go.uber.org/zap"
)

// Config says how one volume is served.
type Config struct {
	Volume string // volume name, for logs

	// EntryTimeout and AttrTimeout are how long the kernel may cache names
	// (positive and negative) and attributes. The primary is the only
	// writer of its volume, so they can be long; changes the kernel did not
	// make itself are pushed to it through notifications.
	EntryTimeout time.Duration
	AttrTimeout  time.Duration

	ReadOnly bool // every mutation answers EROFS
	Sync     bool // every mutation waits until its record is durable

	// Root directory owner and mode for a new (empty) volume.
	RootUid, RootGid uint32
	RootMode         uint32 // permission bits, e.g. 0o755

	// Capacity is the byte total statfs reports and writes are held to
	// (ENOSPC beyond it); MaxInodes likewise for inodes. 0 means: derive
	// from the machine (memory for bytes, open-file limit for inodes).
	Capacity  uint64
	MaxInodes uint64

	// FlushTimeout bounds how long FLUSH, FSYNC, rename and link wait for
	// the sink before answering EIO.
	FlushTimeout time.Duration

	// NotifyDev is the /dev/fuse file the volume is mounted with; kernel
	// notifications are written to it by the notify pool. Nil: no
	// notifications are sent (unit tests).
	NotifyDev *os.File

	Log       *zap.Logger // nil: zap.NewNop()
	AccessLog bool        // one log line per FUSE op
}

// Server serves one mounted volume: it implements fuse.Server with a reader
// goroutine and the actor goroutine (see doc.go).
type Server struct{}

// ErrNotImplemented marks the stub until the actor lands.
var ErrNotImplemented = errors.New("fsactor: not implemented")

// NewServer builds the actor for a volume, from snap when it is recovered
// (nil: a new, empty volume with only its root directory).
func NewServer(cfg Config, sink Sink, snap *Snapshot) (*Server, error) {
	return nil, ErrNotImplemented
}

// ServeOps implements fuse.Server: it reads ops until the kernel closes the
// connection and returns once every op was answered and every task ended.
func (s *Server) ServeOps(c *fuse.Connection) {}

// RemoveName deletes parent/name as if by the filesystem itself (a remote
// change: tests now, followers later) and tells the kernel through the
// notify pool, so the name disappears from its caches.
func (s *Server) RemoveName(ctx context.Context, parent uint64, name string) error {
	return ErrNotImplemented
}

// Snapshot returns a consistent copy of the whole volume, taken on the actor.
func (s *Server) Snapshot(ctx context.Context) (*Snapshot, error) {
	return nil, ErrNotImplemented
}
