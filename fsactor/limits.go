package fsactor

import (
	"errors"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Limits answer like a filesystem: a volume out of --capacity, out of
// --max-inodes, or a process out of descriptors (a large file's memfd, a
// new arena) answers ENOSPC, never EIO: for the writer each is a full
// filesystem, and EMFILE would tell it that its own process holds too
// many files, which is not the case (POSIX gives EMFILE for the caller's
// table only). The step names the limit in its Effects (Effects.Limit);
// the loop tells the Observer (LimitHit: a counter by limit) and logs it,
// at most once per limit every limitLogEvery.

// Limit names what a volume ran out of.
type Limit uint8

// The limits, indices into LimitNames (0: none).
const (
	LimitNone        Limit = iota
	LimitCapacity          // --capacity: the bytes contents may hold
	LimitInodes            // --max-inodes
	LimitDescriptors       // the process's open-file limit (RLIMIT_NOFILE)
	numLimits
)

var limitNames = [numLimits]string{"none", "capacity", "inodes", "descriptors"}

// LimitNames names the limits, by the index Observer.LimitHit receives.
func LimitNames() []string { return limitNames[:] }

func (l Limit) String() string { return limitNames[l] }

// limitLogEvery is how often a limit hit is logged at most, per limit.
const limitLogEvery = 10 * time.Second

// limitHit records that the step ran out of l and returns ENOSPC.
func (st *State) limitHit(l Limit) syscall.Errno {
	st.eff.Limit = l
	return syscall.ENOSPC
}

// storageErr maps an error of getting storage (memfd_create, an arena):
// out of descriptors or memory is a limit hit, ENOSPC; anything else is
// errnoOf's answer.
func (st *State) storageErr(err error) syscall.Errno {
	switch {
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return st.limitHit(LimitDescriptors)
	case errors.Is(err, syscall.ENOMEM), errors.Is(err, syscall.ENOSPC):
		return st.limitHit(LimitCapacity)
	}
	return errnoOf(err)
}

// limitLog is the loop's rate limit of the log lines about limits
// (actor-owned).
type limitLog struct {
	last   [numLimits]time.Time
	missed [numLimits]uint64 // hits not logged since the last line
}

// hit tells the observer and logs at most once per limit every
// limitLogEvery.
func (l *loop) limitHit(lim Limit, now time.Time) {
	l.obs.LimitHit(int(lim))
	ll := &l.limits
	if now.Sub(ll.last[lim]) < limitLogEvery {
		ll.missed[lim]++
		return
	}
	l.log.Warn("volume limit hit: the op answered ENOSPC",
		zap.String("limit", lim.String()), zap.Uint64("hits_not_logged", ll.missed[lim]))
	ll.last[lim], ll.missed[lim] = now, 0
}
