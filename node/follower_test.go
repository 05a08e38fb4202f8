package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	"github.com/spoolfs/spoolfs/internal/testsupport"
	"github.com/spoolfs/spoolfs/replication"
)

// TestFollowerFollowsAndPromotes: a follower mounted from three replicas
// (a node config's volume with follow: true)
// shows what its primary writes (same content, same inode numbers) and
// what it deletes; it answers EROFS to changes; its status, /readyz and
// /metrics say it follows. `spoolfs promote` through its admin endpoint
// makes it the primary without an unmount: a file opened on the follower
// before reads on after it, a write and close succeed and land on the
// replicas under the new term, and the old primary is fenced.
func TestFollowerFollowsAndPromotes(t *testing.T) {
	requireFUSE(t)
	bin := spoolfsBin(t)
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	pdir, fdir := newMountDir(t), newMountDir(t) // their cleanups run after the nodes' Stop
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addrs := startPrimaryNode(ctx, t, "p1", pdir, 0, log).addrs
	must(t, writeFileRaw(filepath.Join(pdir, "a"), []byte("first message\n")))
	must(t, writeFileRaw(filepath.Join(pdir, "gone"), []byte("deleted soon\n")))

	// The follower as `spoolfs run -c node.yaml` starts it.
	fn := NewNode("f1", log)
	t.Cleanup(func() { fn.Stop(nil) })
	cfg := &config.Node{NodeID: "f1", Admin: "127.0.0.1:0",
		Volumes: []config.Volume{{Name: "spool", MountPoint: fdir, Replicas: addrs, Follow: true}}}
	must(t, cfg.Validate())
	must(t, fn.StartConfig(ctx, cfg))
	vols, _ := fn.parts()
	fv, ok := vols[0].(*FollowerVolume)
	if !ok {
		t.Fatalf("node.yaml's follow: true made a %T", vols[0])
	}
	fa := fn.admin
	// What was there when it mounted, and what comes after.
	waitContent(t, filepath.Join(fdir, "a"), "first message\n")
	if got, want := inodeOf(t, filepath.Join(fdir, "a")), inodeOf(t, filepath.Join(pdir, "a")); got != want {
		t.Errorf("inode on the follower %d, on the primary %d", got, want)
	}
	waitContent(t, filepath.Join(fdir, "gone"), "deleted soon\n") // in the kernel's caches now
	must(t, writeFileRaw(filepath.Join(pdir, "b"), []byte("second message\n")))
	must(t, unix.Unlink(filepath.Join(pdir, "gone")))
	waitContent(t, filepath.Join(fdir, "b"), "second message\n")
	testsupport.WaitFor(t, 10*time.Second, "gone to go from the follower", func() bool {
		return errors.Is(unix.Access(filepath.Join(fdir, "gone"), unix.F_OK), syscall.ENOENT)
	})
	if err := writeFileRaw(filepath.Join(fdir, "c"), []byte("x")); !errors.Is(err, syscall.EROFS) {
		t.Errorf("create on the follower: %v, want EROFS", err)
	}
	checkFollowerReported(t, bin, fa.Addr())

	// A reader holding a file open across the promotion.
	fd, err := unix.Open(filepath.Join(fdir, "b"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			unix.Close(fd) // before the cleanups stop the mount
		}
	}()
	start := time.Now()
	out, err := exec.Command(bin, "promote", "spool", "--admin", fa.Addr()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "volume spool at "+fdir+" is read-write: primary with term 2") {
		t.Fatalf("spoolfs promote: %v\n%s", err, out)
	}
	t.Logf("spoolfs promote: read-write %v after it started (the process, the new term, recovery, Server.Promote)", time.Since(start).Round(time.Millisecond))
	buf := make([]byte, 64)
	if n, err := unix.Pread(fd, buf, 0); err != nil || string(buf[:n]) != "second message\n" {
		t.Errorf("a file opened before the promotion, read after: %q, %v", buf[:n], err)
	}
	closed = true
	must(t, unix.Close(fd)) // a Stop waits for the last open file
	must(t, writeFileRaw(filepath.Join(fdir, "c"), []byte("written on the promoted follower\n")))
	st := fv.Primary().Status()
	if st.Term != 2 || st.Durable != st.Head || st.Head == 0 {
		t.Errorf("the new primary: term %d, head %d, durable %d; want term 2 and its write durable", st.Term, st.Head, st.Durable)
	}
	testsupport.WaitFor(t, 10*time.Second, "the replicas to hold the new primary's write", func() bool {
		held := 0
		for _, r := range QueryReplicas(ctx, addrs, nil) {
			for _, v := range r.Volumes {
				if v.Volume == "spool" && v.LastTerm == 2 && v.LSN >= st.Head {
					held++
				}
			}
		}
		return held >= 2
	})
	if ns := fetchStatus(t, fa.Addr()); ns.Volumes[0].Role != "primary" || ns.Volumes[0].Term != 2 {
		t.Errorf("status after the promotion: %+v", ns.Volumes[0])
	}
	if code, body := get(t, fa.Addr(), "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz of the promoted follower: %d %s", code, body)
	}
	if out, err := exec.Command(bin, "promote", "spool", "--admin", fa.Addr()).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "not a follower: it was promoted already") {
		t.Errorf("promote twice: %v\n%s", err, out)
	}
	// The old primary learns it was fenced.
	testsupport.WaitFor(t, 10*time.Second, "the old primary to be fenced", func() bool {
		err := unix.Mkdir(filepath.Join(pdir, "late"), 0o755)
		return errors.Is(err, syscall.EROFS)
	})
	if code := fn.Stop(nil); code != 0 {
		t.Errorf("stopping the promoted follower: exit status %d", code)
	}
}

// checkFollowerReported: status (JSON and `spoolfs status`), /readyz and
// /metrics of a follower that caught up.
func checkFollowerReported(t *testing.T, bin, addr string) {
	t.Helper()
	var v admin.VolumeStatus
	testsupport.WaitForErr(t, 10*time.Second, "the follower to report it caught up", func() error {
		v = fetchStatus(t, addr).Volumes[0]
		if v.Role != "follower" || v.Follow == nil || !v.Follow.Connected || v.Follow.LagRecords != 0 || v.Follow.Applied == 0 {
			return fmt.Errorf("status %+v %+v", v, v.Follow)
		}
		return nil
	})
	if v.Term != 1 || v.Follow.Source == "" || v.Follow.SourceLSN != v.Follow.Applied {
		t.Errorf("follower status: term %d, %+v", v.Term, *v.Follow)
	}
	if code, body := get(t, addr, "/readyz"); code != http.StatusOK || !strings.Contains(body, `"role": "follower"`) {
		t.Errorf("/readyz of a follower caught up: %d %s", code, body)
	}
	_, body := get(t, addr, "/metrics")
	for _, want := range []string{`spoolfs_follower_connected{volume="spool"} 1`, `spoolfs_follower_lag_records{volume="spool"} 0`,
		`spoolfs_follower_applied_lsn{volume="spool"} ` + fmt.Sprint(v.Follow.Applied), `spoolfs_follower_applied_records_total{volume="spool"}`,
		`spoolfs_notify_total{outcome="sent",volume="spool"}`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics of a follower lacks %s", want)
		}
	}
	out, err := exec.Command(bin, "status", "--admin", addr).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("APPLIED")) || !bytes.Contains(out, []byte("spool   follower")) {
		t.Errorf("spoolfs status of a follower: %v\n%s", err, out)
	}
}

// waitContent waits until path reads want.
func waitContent(t *testing.T, path, want string) {
	t.Helper()
	testsupport.WaitForErr(t, 10*time.Second, path+" to read "+fmt.Sprintf("%q", want), func() error {
		got, err := readFileRaw(path)
		if err != nil || string(got) != want {
			return fmt.Errorf("%q, %v", got, err)
		}
		return nil
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// primaryNode is a node holding three replicas of its own, each on a data
// directory of its own, and the primary of their volume "spool": where the
// follower and fencing tests start.
type primaryNode struct {
	n     *Node
	reps  []*Replica
	addrs []string // reps' addresses, in their order
	dirs  []string // reps' data directories, in their order
}

// startPrimaryNode starts node id with three replicas on loopback and
// mounts "spool" at dir as their primary (ctx bounds the recovery; flush,
// if not 0, is the mount's flush timeout). The node stops in t's cleanups,
// before those registered earlier (dir's unmount check).
func startPrimaryNode(ctx context.Context, t *testing.T, id, dir string, flush time.Duration, log *zap.Logger) *primaryNode {
	t.Helper()
	p := &primaryNode{n: NewNode(id, log)}
	t.Cleanup(func() { p.n.Stop(nil) })
	for i := 0; i < 3; i++ {
		data := t.TempDir()
		r, err := p.n.StartReplica(ReplicaOptions{Listen: "127.0.0.1:0", DataDir: data})
		if err != nil {
			t.Fatal(err)
		}
		p.reps, p.addrs, p.dirs = append(p.reps, r), append(p.addrs, r.Addr()), append(p.dirs, data)
	}
	o := config.DefaultMountOptions()
	o.Replicated()
	o.Volume, o.Dir = "spool", dir
	if flush != 0 {
		o.FlushTimeout = flush
	}
	if _, err := p.n.MountVolume(ctx, o, ReplicationOptions{Replicas: p.addrs, Progress: func(replication.Progress) {}}); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFollowerPromoteFails: with two of the three replicas stopped, a
// promotion cannot take a quorum: `spoolfs promote` exits 1 and says
// why, the volume stays read-only and goes on following from the replica
// left; once the replicas are back, the next promotion succeeds.
func TestFollowerPromoteFails(t *testing.T) {
	requireFUSE(t)
	bin := spoolfsBin(t)
	log := zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))
	pdir, fdir := newMountDir(t), newMountDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := startPrimaryNode(ctx, t, "p1", pdir, 2*time.Second, log)
	pn, reps, addrs, dirs := p.n, p.reps, p.addrs, p.dirs
	must(t, writeFileRaw(filepath.Join(pdir, "a"), []byte("acknowledged\n")))
	fn := NewNode("f1", log)
	t.Cleanup(func() { fn.Stop(nil) })
	cfg := &config.Node{NodeID: "f1", Admin: "127.0.0.1:0", Volumes: []config.Volume{{Name: "spool", MountPoint: fdir,
		Replicas: addrs, Follow: true, AcquireTimeout: 2 * time.Second}}}
	must(t, cfg.Validate())
	must(t, fn.StartConfig(ctx, cfg))
	faddr := fn.admin.Addr()
	waitContent(t, filepath.Join(fdir, "a"), "acknowledged\n")

	stopCtx, stopNow := context.WithTimeout(ctx, 200*time.Millisecond) // the primary's streams never end by themselves
	reps[1].Stop(stopCtx)
	reps[2].Stop(stopCtx)
	stopNow()
	out, err := exec.Command(bin, "promote", "spool", "--admin", faddr).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "promotion failed, the volume goes on following (read-only)") {
		t.Errorf("promote without a quorum: %v\n%s\nwant exit 1 and why", err, out)
	}
	if err := writeFileRaw(filepath.Join(fdir, "b"), []byte("x")); !errors.Is(err, syscall.EROFS) {
		t.Errorf("create after a failed promotion: %v, want EROFS", err)
	}
	testsupport.WaitForErr(t, 20*time.Second, "the follower to follow again from the replica left", func() error {
		v := fetchStatus(t, faddr).Volumes[0]
		if v.Role != "follower" || v.Follow == nil || !v.Follow.Connected || v.Follow.Source != addrs[0] {
			return fmt.Errorf("role %q, %+v", v.Role, v.Follow)
		}
		return nil
	})

	for _, i := range []int{1, 2} {
		if _, err := pn.StartReplica(ReplicaOptions{Listen: addrs[i], DataDir: dirs[i]}); err != nil {
			t.Fatal(err)
		}
	}
	out, err = exec.Command(bin, "promote", "spool", "--admin", faddr).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "is read-write") {
		t.Fatalf("promote once the replicas are back: %v\n%s", err, out)
	}
	must(t, writeFileRaw(filepath.Join(fdir, "b"), []byte("after the promotion\n")))
	waitContent(t, filepath.Join(fdir, "a"), "acknowledged\n")
}
