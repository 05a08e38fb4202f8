package bench

// The replicated suite (`bench compare --suite replicated`, make
// bench-replicated): spoolfs with three local replica processes, each
// fsyncing its buntdb file, side by side with a directory on the local disk
// where the same workload fsyncs, 1, 8 and 32 writers.

import (
	"context"
	"errors"
	"fmt"
	pb "github.com/spoolfs/spoolfs/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The kinds of the replicated suite.
const (
	// KindDisk is a plain directory on the local disk: the workload's
	// fsyncs reach the disk (ext4 here), and nothing is copied anywhere.
	KindDisk = "disk"
	// KindReplicated is spoolfs mounted with --replicas, three `spoolfs
	// replica` processes on 127.0.0.1 with their data on the local disk.
	KindReplicated = "spoolfs-replicated"
)

// ReplicatedSuite returns the configuration of `bench compare --suite
// replicated`: the spool workload on the local disk and on spoolfs with
// three replicas, 1, 8 and 32 writers, medians of 5 interleaved rounds.
func ReplicatedSuite() CompareConfig {
	return CompareConfig{
		Suite: "replicated",
		Systems: []SystemSpec{
			{Name: "disk", Kind: KindDisk},
			{Name: "spoolfs-r3", Kind: KindReplicated},
		},
		Workloads: []Workload{Spool},
		Clients:   []int{1, 8, 32},
		Rounds:    5,
		Duration:  2 * time.Second,
		Warmup:    500 * time.Millisecond,
		MaxOps:    2_000_000,
		MaxFiles:  10_000,
		// FUSE requests per message, counted once with one writer.
		CountIters:   200,
		CountClients: []int{1},
	}
}

// ReplicatedTargets are the goals of issue 3: spoolfs with three replicas
// at least Ratio times the local disk's messages/s.
var ReplicatedTargets = []Target{{Spool, 1, 0.2}, {Spool, 8, 0.4}, {Spool, 32, 0.4}}

// FsyncP99Target is issue 3's bound on the p99 of fsync at 1 writer.
const FsyncP99Target = 2 * time.Millisecond

// diskSystem is a directory of the local disk; Mount checks it is one.
type diskSystem struct {
	name, fsType string
}

// newDisk is a directory under $TMPDIR, where Compare makes its directories.
func newDisk(name string) *diskSystem {
	s := &diskSystem{name: name, fsType: "unknown filesystem"}
	var st unix.Statfs_t
	if unix.Statfs(os.TempDir(), &st) == nil {
		s.fsType = fsTypeName(st.Type)
	}
	return s
}

func (s *diskSystem) Name() string { return s.name }
func (s *diskSystem) Kind() string { return KindDisk }
func (s *diskSystem) FUSE() bool   { return false }
func (s *diskSystem) Describe() string {
	return fmt.Sprintf("a directory on the local disk (%s), fsync as the workload asks, no copy elsewhere", s.fsType)
}

func (s *diskSystem) Mount(ctx context.Context, dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	s.fsType = fsTypeName(st.Type)
	switch st.Type {
	case unix.TMPFS_MAGIC, unix.RAMFS_MAGIC, unix.OVERLAYFS_SUPER_MAGIC:
		return fmt.Errorf("%s is on %s, not a disk: set TMPDIR to a directory on a disk", dir, s.fsType)
	}
	return nil
}

func (s *diskSystem) Unmount() error { return nil }

func fsTypeName(t int64) string {
	switch t {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	}
	return fmt.Sprintf("filesystem 0x%x", t)
}

// replicatedSystem is spoolfs mounted with --replicas and its three replica
// processes; their data lives next to the mount point, on the same disk as
// the disk system's directory.
type replicatedSystem struct {
	*childSystem
	bin      string
	flags    []string
	replicas []*exec.Cmd
	exited   []chan struct{}
	addrs    []string
}

func newReplicated(name, bin string, args []string) *replicatedSystem {
	env, bin, prog, flags := variantArgs(bin, args)
	words := append(append(slices.Clone(env), prog+" mount --replicas A,B,C VOLUME DIR"), flags...)
	return &replicatedSystem{bin: bin, flags: flags,
		childSystem: &childSystem{name: name, kind: KindReplicated, bin: bin, env: env,
			describe: strings.Join(words, " ") +
				" (child process) with 3 `" + prog + " replica` processes on 127.0.0.1, data on the local disk (buntdb, fsync per batch)"}}
}

func (s *replicatedSystem) Mount(ctx context.Context, dir string) error {
	var addrs []string
	for i := 1; i <= 3; i++ {
		addr, err := s.startReplica(fmt.Sprintf("%s-replica-%d", dir, i))
		if err != nil {
			s.stopReplicas()
			return err
		}
		addrs = append(addrs, addr)
	}
	s.addrs = addrs
	s.childSystem.argv = func(dir string) []string {
		args := []string{"mount", "--log-level", "warn", "--replicas", strings.Join(addrs, ","), "--node-id", "bench"}
		return append(append(args, s.flags...), "bench", dir)
	}
	if err := s.childSystem.Mount(ctx, dir); err != nil {
		s.stopReplicas()
		return err
	}
	return nil
}

// startReplica runs `spoolfs replica` on a free loopback port and waits
// until it accepts connections.
func (s *replicatedSystem) startReplica(data string) (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := lis.Addr().String()
	lis.Close()
	out := &lockedBuffer{}
	cmd := exec.Command(s.bin, "--log-level", "warn", "replica", "--listen", addr, "--data", data)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), s.env...) // a variant's environment goes to every process of it
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start replica: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.replicas, s.exited = append(s.replicas, cmd), append(s.exited, exited)
	deadline := time.Now().Add(mountTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr, nil
		}
		select {
		case <-exited:
			return "", fmt.Errorf("replica on %s exited: %s", addr, out.Tail(600))
		default:
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("replica on %s does not answer: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *replicatedSystem) Unmount() error {
	err := s.childSystem.Unmount()
	return errors.Join(err, s.stopReplicas())
}

// stopReplicas sends SIGTERM to the replicas and waits for them.
func (s *replicatedSystem) stopReplicas() error {
	var errs []error
	for i, cmd := range s.replicas {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited[i]:
		case <-time.After(unmountTimeout):
			cmd.Process.Kill()
			<-s.exited[i]
			errs = append(errs, fmt.Errorf("replica %d did not stop within %s after SIGTERM: killed", i+1, unmountTimeout))
		}
	}
	s.replicas, s.exited = nil, nil
	return errors.Join(errs...)
}

// HelperPIDs returns the pids of the replica processes.
func (s *replicatedSystem) HelperPIDs() []int {
	var pids []int
	for _, cmd := range s.replicas {
		if cmd.Process != nil {
			pids = append(pids, cmd.Process.Pid)
		}
	}
	return pids
}

// ReplicaCommits sums the batches the replicas committed to the bench
// volume (their Status RPC).
func (s *replicatedSystem) ReplicaCommits() (uint64, error) {
	var n uint64
	for _, addr := range s.addrs {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return 0, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := pb.NewReplicaClient(conn).Status(ctx, &pb.StatusRequest{Volume: "bench"})
		cancel()
		conn.Close()
		if err != nil {
			return 0, fmt.Errorf("replica %s: %w", addr, err)
		}
		for _, v := range resp.Volumes {
			n += v.Commits
		}
	}
	return n, nil
}
