package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/admin"
	"github.com/spoolfs/spoolfs/internal/config"
	"github.com/spoolfs/spoolfs/replication"
)

// TestReplicaDataDirLock: a data directory serves one replica at a time;
// a stopped replica releases it and a restarted one finds its volumes.
func TestReplicaDataDirLock(t *testing.T) {
	dir := t.TempDir()
	log := zaptest.NewLogger(t)
	r, err := StartReplica(ReplicaOptions{Listen: "127.0.0.1:0", DataDir: dir}, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := StartReplica(ReplicaOptions{Listen: "127.0.0.1:0", DataDir: dir}, log); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second replica on %s: %v, want 'in use'", dir, err)
	}
	r.Stop(context.Background())
	if r.Err() != nil {
		t.Errorf("Err after Stop: %v", r.Err())
	}
	r2, err := StartReplica(ReplicaOptions{Listen: "127.0.0.1:0", DataDir: dir}, log)
	if err != nil {
		t.Fatalf("restart on the released directory: %v", err)
	}
	r2.Stop(context.Background())
	if _, err := StartReplica(ReplicaOptions{Listen: "nonsense", DataDir: dir}, log); err == nil {
		t.Error("listen on a bad address: no error")
	}
}

// TestEmbeddedNode runs the embedded cluster in process: the volume is
// served through three replicas, the admin endpoint reports it, a stop
// unmounts cleanly, and a second start recovers the volume (same content,
// same inode number, a higher term). A second primary of the same volume
// fences the first: /readyz says so.
func TestEmbeddedNode(t *testing.T) {
	requireFUSE(t)
	data := t.TempDir()
	mnt := newMountDir(t)
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))

	n, adminAddr, out := startEmbedded(t, data, mnt, log)
	if !strings.Contains(out, "is mounted at "+mnt) || !strings.Contains(out, "spoolfs status --admin "+adminAddr) {
		t.Errorf("banner does not say where and how to look:\n%s", out)
	}
	content := []byte("From: a\n\nhello\n")
	if err := writeFileRaw(filepath.Join(mnt, "msg"), content); err != nil {
		t.Fatal(err)
	}
	ino := inodeOf(t, filepath.Join(mnt, "msg"))

	ns := fetchStatus(t, adminAddr)
	if len(ns.Volumes) != 1 || len(ns.Replicas) != 3 {
		t.Fatalf("status: %+v", ns)
	}
	v := ns.Volumes[0]
	if v.Role != "primary" || v.Term != 1 || v.Durable < 2 || v.W != 2 || len(v.Links) != 3 {
		t.Errorf("volume status: %+v", v)
	}
	checkMetrics(t, adminAddr)
	for _, path := range []string{"/healthz", "/readyz", "/debug/pprof/"} {
		if code, body := get(t, adminAddr, path); code != http.StatusOK {
			t.Errorf("%s: %d %s", path, code, body)
		}
	}
	var table bytes.Buffer
	if err := admin.PrintStatus(&table, ns); err != nil || !strings.Contains(table.String(), "spool   primary") {
		t.Errorf("status table:\n%s", table.String())
	}

	checkPromotePrimary(t, adminAddr)

	if code := n.Stop(nil); code != 0 {
		t.Fatalf("Stop: exit status %d", code)
	}
	if len(fuseMountsAt(t, mnt)) != 0 {
		t.Fatal("still mounted after Stop")
	}

	n2, admin2, _ := startEmbedded(t, data, mnt, log)
	if got, err := readFileRaw(filepath.Join(mnt, "msg")); err != nil || !bytes.Equal(got, content) {
		t.Errorf("after restart: %q, %v", got, err)
	}
	if got := inodeOf(t, filepath.Join(mnt, "msg")); got != ino {
		t.Errorf("inode after restart %d, was %d", got, ino)
	}
	if ns := fetchStatus(t, admin2); ns.Volumes[0].Term != 2 {
		t.Errorf("term after restart %d, want 2", ns.Volumes[0].Term)
	}
	fenceFrom(t, n2, admin2, fetchStatus(t, admin2), log)
	n2.Stop(nil)
}

// fenceFrom mounts the volume a second time through the same replicas:
// the first primary, once its next flush is refused, is fenced.
func fenceFrom(t *testing.T, n *Node, adminAddr string, ns admin.NodeStatus, log *zap.Logger) {
	t.Helper()
	var addrs []string
	for _, l := range ns.Volumes[0].Links {
		addrs = append(addrs, l.Addr)
	}
	o := config.DefaultMountOptions()
	o.Volume, o.Dir = "spool", newMountDir(t)
	other, err := MountReplicated(context.Background(), o, ReplicationOptions{NodeID: "other", Replicas: addrs,
		Progress: func(replication.Progress) {}}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_, _ = other.Unmount(context.Background())
		<-other.Done()
		other.Close(time.Second)
	}()
	err = writeFileRaw(filepath.Join(ns.Volumes[0].Dir, "late"), []byte("x"))
	// EIO when the close is what finds the fence; EROFS when the primary
	// learned it first (a record it shipped on its own was refused).
	if !errors.Is(err, syscall.EIO) && !errors.Is(err, syscall.EROFS) {
		t.Errorf("write on the fenced primary: %v, want EIO or EROFS", err)
	}
	if err := unix.Mkdir(filepath.Join(ns.Volumes[0].Dir, "later"), 0o755); !errors.Is(err, syscall.EROFS) {
		t.Errorf("mkdir on the fenced primary: %v, want EROFS", err)
	}
	code, body := get(t, adminAddr, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "fenced") {
		t.Errorf("/readyz of the fenced primary: %d %s", code, body)
	}
	if got := fetchStatus(t, adminAddr); got.Volumes[0].Role != "fenced" {
		t.Errorf("status of the fenced primary: role %q", got.Volumes[0].Role)
	}
}

// checkPromotePrimary: `spoolfs promote` of a volume this node is the
// primary of, or does not serve, fails (exit 1) and says why; the volume
// stays writable.
func checkPromotePrimary(t *testing.T, adminAddr string) {
	t.Helper()
	for _, tc := range []struct{ vol, want string }{
		{"spool", "spoolfs: promote: volume spool: admin: not a follower: this node is its primary\n"},
		{"nope", "spoolfs: promote: volume nope: admin: no such volume here (it serves spool)\n"},
	} {
		out, err := exec.Command(spoolfsBin(t), "promote", tc.vol, "--admin", adminAddr).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), tc.want) {
			t.Errorf("spoolfs promote %s: %v\n%s\nwant exit 1 and %q", tc.vol, err, out, tc.want)
		}
	}
	ns := fetchStatus(t, adminAddr)
	if err := writeFileRaw(filepath.Join(ns.Volumes[0].Dir, "after-promote"), []byte("x")); err != nil {
		t.Errorf("write after a refused promote: %v", err)
	}
}

func startEmbedded(t *testing.T, data, mnt string, log *zap.Logger) (*Node, string, string) {
	t.Helper()
	n := NewNode("test", log)
	var out bytes.Buffer
	o := config.DefaultMountOptions()
	o.Volume, o.Dir = "spool", mnt
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.StartEmbedded(ctx, EmbeddedOptions{DataDir: data, Mount: o, Admin: "127.0.0.1:0", Out: &out}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop(nil) })
	return n, n.admin.Addr(), out.String()
}

// writeFileRaw and readFileRaw access a mount served by this very process
// with plain system calls. os.OpenFile would register the file with Go's
// netpoller: its epoll_ctl sends the mount's first FUSE_POLL from a thread
// the runtime counts as running, so a garbage collection starting then
// waits for that thread while the thread waits for the server, which is
// stopped: the test process deadlocks (seen here, about once in 20 runs).
func writeFileRaw(path string, data []byte) error {
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_TRUNC|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if err != nil {
			unix.Close(fd)
			return err
		}
		data = data[n:]
	}
	return unix.Close(fd)
}

func readFileRaw(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, buf[:n]...)
	}
}

func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func fetchStatus(t *testing.T, addr string) admin.NodeStatus {
	t.Helper()
	var ns admin.NodeStatus
	code, body := get(t, addr, "/status")
	if code != http.StatusOK {
		t.Fatalf("/status: %d %s", code, body)
	}
	if err := json.Unmarshal([]byte(body), &ns); err != nil {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	return ns
}

// checkMetrics: the families the operations guide relies on are there.
func checkMetrics(t *testing.T, addr string) {
	t.Helper()
	code, body := get(t, addr, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`spoolfs_fuse_ops_total{op="create",volume="spool"} 1`,
		`spoolfs_primary_term{volume="spool"} 1`,
		`spoolfs_primary_durable_lsn{volume="spool"}`,
		`spoolfs_replication_lag_records{replica="127.0.0.1:`,
		`spoolfs_replication_connected{replica="127.0.0.1:`,
		`spoolfs_replication_quorum{replica="127.0.0.1:`,
		`spoolfs_replication_ack_seconds_bucket{replica="127.0.0.1:`,
		`spoolfs_replication_lag_bytes{replica="127.0.0.1:`,
		`spoolfs_replication_lag_seconds{replica="127.0.0.1:`,
		`spoolfs_memory_bytes{kind="contents",volume="spool"}`,
		`spoolfs_replica_fsync_seconds_bucket{replica="127.0.0.1:`,
		`spoolfs_replica_batch_records_bucket{replica="127.0.0.1:`,
		`spoolfs_durability_wait_seconds_count{op="flush",outcome="ok",volume="spool"}`,
		`spoolfs_fuse_op_duration_seconds_bucket{op="create",volume="spool",le="`,
		`spoolfs_notify_queue_depth{volume="spool"}`,
		`spoolfs_fencing_events_total{volume="spool"}`,
		`spoolfs_build_info{commit="`,
		`spoolfs_replica_lsn{replica="127.0.0.1:`,
		`spoolfs_replica_commits_total{replica="127.0.0.1:`,
		`spoolfs_notify_total{outcome="sent",volume="spool"}`,
		`spoolfs_node_info{node_id="test"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
