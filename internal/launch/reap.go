package launch

// Orphans of the child. While RunChild runs, this process is a child
// subreaper (prctl PR_SET_CHILD_SUBREAPER): a process the child leaves behind
// (a daemon that double-forked, a delivery process whose parent died) is
// reparented here instead of to init. Such orphans are reaped as they exit
// (on SIGCHLD) and, once the child itself has exited, stopped like the child
// (SIGTERM, then SIGKILL after the grace period), so that no process of the
// spool keeps the mount busy or writes to it after the flush. Children this
// process had before the child started are left alone; a child it started
// while the child runs would be taken for an orphan, so it starts none.

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/procfs"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

type reaper struct {
	chld chan os.Signal
	self int
	// others are the children this process had before the child started:
	// not the child's, never reaped or stopped here.
	others      map[int]bool
	pollCeiling time.Duration
}

func startReaper() (*reaper, error) {
	r := &reaper{chld: make(chan os.Signal, 1), self: os.Getpid(), others: map[int]bool{}, pollCeiling: 50 * time.Millisecond}
	for _, pid := range childrenOf(r.self) {
		r.others[pid] = true
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("launch: become child subreaper: %w", err)
	}
	signal.Notify(r.chld, syscall.SIGCHLD)
	return r, nil
}

func (r *reaper) stop() {
	signal.Stop(r.chld)
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
}

// reapOrphans reaps every exited child of this process except keep, which
// os/exec waits for.
func (r *reaper) reapOrphans(keep int) {
	for _, pid := range childrenOf(r.self) {
		if pid != keep && !r.others[pid] {
			reapIfExited(pid)
		}
	}
}

// stopOrphans stops the children left once the main child has exited:
// SIGTERM at once, SIGKILL to those still there after grace, and reaps them
// all. Orphans that appear meanwhile (grandchildren whose parent just died)
// get the same treatment.
func (r *reaper) stopOrphans(grace time.Duration, log *zap.Logger) {
	deadline := time.Now().Add(grace)
	termed := map[int]bool{}
	poll := &backoff.ExponentialBackOff{InitialInterval: time.Millisecond, Multiplier: 2, MaxInterval: r.pollCeiling}
	for {
		left := r.liveChildren()
		if len(left) == 0 {
			return
		}
		kill := time.Now().After(deadline)
		for _, pid := range left {
			switch {
			case kill:
				_ = unix.Kill(pid, unix.SIGKILL)
			case !termed[pid]:
				termed[pid] = true
				log.Info("stopping process left by the child", zap.Int("pid", pid))
				_ = unix.Kill(pid, unix.SIGTERM)
			}
		}
		if kill {
			log.Warn("processes left by the child did not stop in time: SIGKILL", zap.Ints("pids", left))
		}
		select {
		case <-r.chld:
		case <-time.After(poll.NextBackOff()):
		}
	}
}

// liveChildren reaps the exited children and returns the others.
func (r *reaper) liveChildren() []int {
	var live []int
	for _, pid := range childrenOf(r.self) {
		if !r.others[pid] && !reapIfExited(pid) {
			live = append(live, pid)
		}
	}
	return live
}

// reapIfExited collects pid's exit status if it has exited; it reports
// whether pid is gone.
func reapIfExited(pid int) bool {
	var ws unix.WaitStatus
	got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	return got == pid || errors.Is(err, unix.ECHILD)
}

// childrenOf lists the processes whose parent is ppid, from /proc (read
// by prometheus/procfs).
func childrenOf(ppid int) []int {
	procs, err := procfs.AllProcs()
	if err != nil {
		return nil
	}
	var kids []int
	for _, p := range procs {
		if st, err := p.Stat(); err == nil && st.PPID == ppid {
			kids = append(kids, p.PID)
		}
	}
	return kids
}
