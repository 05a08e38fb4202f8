package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/spoolfs/spoolfs/fsactor"
	"github.com/spoolfs/spoolfs/internal/config"
	"github.com/spoolfs/spoolfs/internal/testsupport"
	"github.com/spoolfs/spoolfs/replication"
)

// recoveredSnapshot is a volume as recovery hands it to MountReplicated
// (issue 13's recovery benchmark, e2e TestScaleRecovery): files of 1 KiB
// spread over 100 directories d00..d99, named m0000000..., each file's
// content its own allocation (the Fetch's receiver aliases one buffer per
// message instead: the same work for the restore).
func recoveredSnapshot(files int) *replication.Snapshot {
	const dirs = 100
	const t0 = int64(1_700_000_000_000_000_000)
	dirAttr := fsactor.Attr{Mode: syscall.S_IFDIR | 0o755, Nlink: 2, Atime: t0, Mtime: t0, Ctime: t0}
	root := fsactor.SnapInode{Ino: 1, Attr: dirAttr}
	root.Attr.Nlink = 2 + dirs
	snap := &replication.Snapshot{LSN: uint64(dirs + 2*files), NextIno: uint64(2 + dirs + files)}
	snap.Inodes = make([]fsactor.SnapInode, 0, 1+dirs+files)
	snap.Inodes = append(snap.Inodes, root)
	for d := range dirs {
		snap.Inodes[0].Entries = append(snap.Inodes[0].Entries, fsactor.SnapDirent{Name: fmt.Sprintf("d%02d", d), Ino: uint64(2 + d)})
		snap.Inodes = append(snap.Inodes, fsactor.SnapInode{Ino: uint64(2 + d), Attr: dirAttr,
			Entries: make([]fsactor.SnapDirent, 0, files/dirs+1)})
	}
	fileAttr := fsactor.Attr{Mode: syscall.S_IFREG | 0o600, Nlink: 1, Size: 1024, Atime: t0, Mtime: t0, Ctime: t0}
	for k := range files {
		ino := uint64(2 + dirs + k)
		data := make([]byte, 1024)
		copy(data, fmt.Sprintf("%08d", k))
		snap.Inodes = append(snap.Inodes, fsactor.SnapInode{Ino: ino, Attr: fileAttr, Data: data})
		d := &snap.Inodes[1+k%dirs]
		d.Entries = append(d.Entries, fsactor.SnapDirent{Name: fmt.Sprintf("m%07d", k), Ino: ino})
	}
	return snap
}

// nopSink keeps nothing and is not a DiscardSink: the actor built on it
// restores and ships contents as a replicated primary's does.
type nopSink struct{}

func (nopSink) Append(*fsactor.Record)             {}
func (nopSink) Durable() uint64                    { return 0 }
func (nopSink) Wait(context.Context, uint64) error { return nil }

// BenchmarkRecoveredMount times what MountReplicated does after
// replication handed over the recovered snapshot: Mount (fsactor's
// restore into a new actor, the FUSE mount, INIT answered), at 200,000
// and 1,000,000 files of 1 KiB. "state" is fsactor.NewState alone (no
// mount). Run one iteration each:
//
//	go test -run '^$' -bench RecoveredMount -benchtime 1x ./node
func BenchmarkRecoveredMount(b *testing.B) {
	for _, files := range []int{200_000, 1_000_000} {
		b.Run(fmt.Sprintf("state/files=%d", files), func(b *testing.B) {
			b.StopTimer()
			for range b.N {
				snap := recoveredSnapshot(files)
				runtime.GC()
				cpu := cpuTime()
				b.StartTimer()
				st, err := fsactor.NewState(fsactor.Config{Volume: "bench"}, snap)
				b.StopTimer()
				b.ReportMetric((cpuTime()-cpu).Seconds()/float64(b.N), "cpu-s/op")
				if err != nil {
					b.Fatal(err)
				}
				st.Close()
			}
		})
		b.Run(fmt.Sprintf("mount/files=%d", files), func(b *testing.B) {
			testsupport.RequireRoot(b, "the mount benchmark")
			testsupport.RequireMount(b)
			for range b.N {
				benchMountOnce(b, files)
			}
		})
	}
}

// benchMountOnce mounts a recovered volume of files files, timed from
// Mount's call to its return, and unmounts it.
func benchMountOnce(b *testing.B, files int) {
	b.StopTimer()
	base, err := os.MkdirTemp("", "spoolfs-bench-restore-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(base)
	o := config.DefaultMountOptions()
	o.Volume, o.Dir = "bench-restore", filepath.Join(base, "mnt")
	if err := os.Mkdir(o.Dir, 0o755); err != nil {
		b.Fatal(err)
	}
	snap := recoveredSnapshot(files)
	runtime.GC()
	cpu := cpuTime()
	b.StartTimer()
	start := time.Now()
	v, err := Mount(o, nopSink{}, snap, zap.NewNop())
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric((cpuTime()-cpu).Seconds()/float64(b.N), "cpu-s/op")
	if err != nil {
		b.Fatal(err)
	}
	snap = nil
	rss := vmRSS()
	runtime.GC() // what releaseRestored does after MountReplicated, here waited for
	debug.FreeOSMemory()
	b.Logf("%d files: mounted in %v (%v of CPU); RSS %d MiB, %d MiB after releaseRestored",
		files, elapsed.Round(time.Millisecond), (cpuTime() - cpu).Round(time.Millisecond), rss>>20, vmRSS()>>20)
	ents, err := os.ReadDir(filepath.Join(o.Dir, "d07"))
	if err != nil || len(ents) != files/100 {
		b.Errorf("d07 lists %d names, %v; want %d", len(ents), err, files/100)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := v.Unmount(ctx); err != nil {
		b.Fatal(err)
	}
	<-v.Done()
}

// cpuTime is the CPU the process used so far (every thread: the GC's
// too): wall time on this shared machine says more about the others' load.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// vmRSS is the process's resident memory (VmRSS), in bytes.
func vmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
