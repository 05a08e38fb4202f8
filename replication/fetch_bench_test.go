package replication

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"syscall"
	"testing"
	"time"

	pb "github.com/spoolfs/spoolfs/proto"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// fetchFiles sets BenchmarkFetch's volume size; 0 runs 200,000 and
// 1,000,000.
var fetchFiles = flag.Int("fetch.files", 0, "BenchmarkFetch: files of 1 KiB in the volume (0: 200,000 and 1,000,000)")

// fetchProfile, when set, names the CPU profile (and, with .trace, the
// execution trace) of BenchmarkFetch's fetches alone, without the seeding
// and the replica's opening that -cpuprofile would include.
var fetchProfile = flag.String("fetch.profile", "", "BenchmarkFetch: write a CPU profile of the fetches alone to this file")

// BenchmarkFetch: a recovering primary's load of a volume of N files of
// 1 KiB in 100 directories from a real replica (buntdb file in a temp
// dir, the gRPC server on loopback): the Fetch stream, the assembler and
// checkSnapshot, as recovery.fetch does them (issue 13: recovery of
// 1,000,000 files ≤ 10 s). Run with -benchtime 1x; each iteration is one
// whole fetch. Reports the time per fetch and its allocations.
func BenchmarkFetch(b *testing.B) {
	sizes := []int{200_000, 1_000_000}
	if *fetchFiles > 0 {
		sizes = []int{*fetchFiles}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("files=%d", n), func(b *testing.B) { benchFetch(b, n) })
	}
}

func benchFetch(b *testing.B, files int) {
	dir := b.TempDir()
	t0 := time.Now()
	if err := seedVolume(filepath.Join(dir, vol+".db"), files, 1024); err != nil {
		b.Fatal(err)
	}
	seeded := time.Since(t0)
	addr := serveReplica(b, dir)
	opened := time.Since(t0) - seeded
	r, want := fetchRecovery(b, addr)
	runtime.GC()
	b.Logf("seeded %d files in %v, replica opened in %v", files, seeded.Round(time.Millisecond), opened.Round(time.Millisecond))
	b.ReportAllocs()
	stop := profileFetch(b)
	b.ResetTimer()
	defer stop()
	cpu0 := cpuTime()
	for range b.N {
		snap, err := r.fetch(context.Background(), 0, want)
		if err != nil {
			b.Fatal(err)
		}
		if len(snap.Inodes) != files+101 {
			b.Fatalf("fetched %d inodes, want %d", len(snap.Inodes), files+101)
		}
	}
	b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
}

// cpuTime is the process's CPU time (user and system) so far: on a
// machine shared with other builds the wall time of a fetch says less
// than the CPU it took (replica and primary together, in one process).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// seedVolume writes a volume database at path as an install writes one:
// a root, 100 directories and files files of size bytes spread over
// them, at lsn 1 of term 1. One inode at a time is in memory.
func seedVolume(path string, files, size int) error {
	const dirs = 100
	firstFile := uint64(dirs) + 2
	m := meta{LastTerm: 1, LSN: 1, NextIno: firstFile + uint64(files), Initialized: true}
	body := make([]byte, size)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	return writeAOF(path, func(set func(k, v string) error) error {
		if err := set(keyMeta, m.encode()); err != nil {
			return err
		}
		root := &SnapInode{Ino: RootIno, Attr: dirAttr()}
		for d := range dirs {
			root.Entries = append(root.Entries, SnapDirent{Name: fmt.Sprintf("d%02d", d), Ino: uint64(d) + 2})
		}
		if err := writeSnapInode(set, root); err != nil {
			return err
		}
		for d := range dirs {
			dino := uint64(d) + 2
			in := &SnapInode{Ino: dino, Attr: dirAttr()}
			for ino := firstFile + uint64(d); ino < m.NextIno; ino += dirs {
				in.Entries = append(in.Entries, SnapDirent{Name: fmt.Sprintf("m%07d", ino), Ino: ino})
			}
			if err := writeSnapInode(set, in); err != nil {
				return err
			}
			if err := set(upKey(dino), encodeU64(RootIno)); err != nil {
				return err
			}
		}
		for ino := firstFile; ino < m.NextIno; ino++ {
			body[0] = byte(ino)
			if err := writeSnapInode(set, &SnapInode{Ino: ino, Attr: fileAttr(size), Data: body}); err != nil {
				return err
			}
		}
		return nil
	})
}

// serveReplica serves a replica from dir on a loopback port until the
// benchmark ends.
func serveReplica(b *testing.B, dir string) string {
	srv, err := NewReplicaServer(dir, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	g := grpc.NewServer(ServerOptions()...)
	srv.Register(g)
	go func() { _ = g.Serve(lis) }()
	b.Cleanup(func() {
		g.Stop()
		_ = srv.Close()
	})
	return lis.Addr().String()
}

// fetchRecovery is a recovering primary's view of the replica at addr,
// term 2 acquired: what recovery.fetch needs.
func fetchRecovery(b *testing.B, addr string) (*recovery, *pb.AcquireResponse) {
	cfg, err := PrimaryConfig{Volume: vol, NodeID: "bench", Replicas: []string{addr}, W: 1, Log: zap.NewNop()}.withDefaults()
	if err != nil {
		b.Fatal(err)
	}
	conns, err := dialAll(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conns[0].Close() })
	r := &recovery{cfg: cfg, log: cfg.Log, clients: []pb.ReplicaClient{pb.NewReplicaClient(conns[0])}}
	resp, err := r.clients[0].Acquire(context.Background(), &pb.AcquireRequest{Volume: vol, Term: 2, NodeId: cfg.holder,
		ProtocolVersion: cfg.versions.speaks()})
	if err != nil || !resp.Granted {
		b.Fatalf("acquire: %v %v", resp, err)
	}
	return r, resp
}

// profileFetch starts the -fetch.profile CPU profile and trace; the
// returned func stops them.
func profileFetch(b *testing.B) func() {
	if *fetchProfile == "" {
		return func() {}
	}
	cpu, err := os.Create(*fetchProfile)
	if err != nil {
		b.Fatal(err)
	}
	tr, err := os.Create(*fetchProfile + ".trace")
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		b.Fatal(err)
	}
	if err := trace.Start(tr); err != nil {
		b.Fatal(err)
	}
	return func() {
		trace.Stop()
		pprof.StopCPUProfile()
		_ = cpu.Close()
		_ = tr.Close()
	}
}
