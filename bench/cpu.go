package bench

import (
	"fmt"
	"time"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// CPUTimes is the processor time (user + system) used during the timed part
// of a run.
type CPUTimes struct {
	// Bench is this process: the clients and their system calls, which
	// include the kernel's FUSE client side, and a server served in this
	// process (memfs).
	Bench time.Duration
	// Server is a server in its own process (spoolfs); 0 when there is none.
	Server time.Duration
	// Helpers are the server's helper processes (the replicas of a
	// replicated mount), all together; 0 when there are none.
	Helpers time.Duration
}

// userHZ is the unit of the times in /proc/PID/stat (USER_HZ, 100 on Linux).
const userHZ = 100

// processCPU returns the user + system time of process pid, all threads.
func processCPU(pid int) (time.Duration, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return 0, fmt.Errorf("cpu time of %d: %w", pid, err)
	}
	return procCPU(fs, pid)
}

// procCPU reads utime and stime of pid's /proc/PID/stat in fs (by
// prometheus/procfs, which counts fields from the command name's closing
// parenthesis: the name may hold spaces) as a duration, exactly (procfs's
// own CPUTime is a float of seconds).
func procCPU(fs procfs.FS, pid int) (time.Duration, error) {
	p, err := fs.Proc(pid)
	if err != nil {
		return 0, fmt.Errorf("cpu time of %d: %w", pid, err)
	}
	st, err := p.Stat()
	if err != nil {
		return 0, fmt.Errorf("cpu time of %d: %w", pid, err)
	}
	return time.Duration(st.UTime+st.STime) * time.Second / userHZ, nil
}

// selfCPU returns this process's user + system time.
func selfCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter measures CPUTimes between start and stop.
type cpuMeter struct {
	serverPID    int // 0: no server process
	helperPIDs   []int
	bench0, srv0 time.Duration
	help0        time.Duration
	commits      commitCounter // nil: none
	commits0     uint64
	gotCommits   uint64
	got          CPUTimes
}

// serverProcess is implemented by systems served by another process.
type serverProcess interface{ ServerPID() int }

// helperProcesses is implemented by systems whose server needs more
// processes (the replicas).
type helperProcesses interface{ HelperPIDs() []int }

// commitCounter is implemented by systems whose replicas count the batches
// they commit.
type commitCounter interface{ ReplicaCommits() (uint64, error) }

func newCPUMeter(sys System) *cpuMeter {
	m := &cpuMeter{}
	if sp, ok := sys.(serverProcess); ok {
		m.serverPID = sp.ServerPID()
	}
	if hp, ok := sys.(helperProcesses); ok {
		m.helperPIDs = hp.HelperPIDs()
	}
	m.commits, _ = sys.(commitCounter)
	return m
}

func (m *cpuMeter) start() error {
	m.bench0 = selfCPU()
	if m.serverPID > 0 {
		t, err := processCPU(m.serverPID)
		if err != nil {
			return err
		}
		m.srv0 = t
	}
	t, err := helpersCPU(m.helperPIDs)
	m.help0 = t
	if err == nil && m.commits != nil {
		m.commits0, err = m.commits.ReplicaCommits()
	}
	return err
}

func helpersCPU(pids []int) (time.Duration, error) {
	var sum time.Duration
	for _, pid := range pids {
		t, err := processCPU(pid)
		if err != nil {
			return 0, err
		}
		sum += t
	}
	return sum, nil
}

func (m *cpuMeter) stop() error {
	m.got.Bench = selfCPU() - m.bench0
	if m.serverPID > 0 {
		t, err := processCPU(m.serverPID)
		if err != nil {
			return err
		}
		m.got.Server = t - m.srv0
	}
	t, err := helpersCPU(m.helperPIDs)
	m.got.Helpers = t - m.help0
	if err == nil && m.commits != nil {
		var n uint64
		n, err = m.commits.ReplicaCommits()
		m.gotCommits = n - m.commits0
	}
	return err
}
