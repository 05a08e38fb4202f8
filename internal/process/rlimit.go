package process

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// FileLimit is RLIMIT_NOFILE before and after RaiseFileLimit.
type FileLimit struct {
	Was  uint64 // soft limit found at start
	Soft uint64 // soft limit reached
	Hard uint64 // hard limit reached
}

// Fields renders the limit for a log line.
func (l FileLimit) Fields() []zap.Field {
	return []zap.Field{zap.Uint64("nofile", l.Soft), zap.Uint64("was", l.Was), zap.Uint64("hard", l.Hard)}
}

// RaiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit, and as
// root (or with CAP_SYS_RESOURCE) first raises the hard limit to
// fs.nr_open: a volume holds a memfd descriptor per arena of small files
// and per file above 64 KiB (fsactor/arena.go), and its data records'
// views one each while replication reads them. The caller logs
// the result (it does not log, so errors before the mount stay one line).
func RaiseFileLimit() (FileLimit, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return FileLimit{}, fmt.Errorf("getrlimit(RLIMIT_NOFILE): %w", err)
	}
	out := FileLimit{Was: lim.Cur, Soft: lim.Cur, Hard: lim.Max}
	if nrOpen, err := readNrOpen(); err == nil && nrOpen > lim.Max {
		raised := unix.Rlimit{Cur: nrOpen, Max: nrOpen}
		if unix.Setrlimit(unix.RLIMIT_NOFILE, &raised) == nil {
			lim = raised
		}
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return out, fmt.Errorf("setrlimit(RLIMIT_NOFILE, %d): %w", lim.Max, err)
		}
	}
	out.Soft, out.Hard = lim.Cur, lim.Max
	return out, nil
}

// readNrOpen reads fs.nr_open, the ceiling of any RLIMIT_NOFILE.
func readNrOpen() (uint64, error) {
	b, err := os.ReadFile("/proc/sys/fs/nr_open")
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}
