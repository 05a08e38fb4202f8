package e2e

// The follower processes of the follower tests (follower_test.go,
// follower_promote_test.go, the fault test's follower): `spoolfs mount
// --follow` on a fresh mount point with its own admin endpoint, read
// through /status (its applied position) and /debug/pprof (its goroutines
// when a test times out), and `spoolfs promote` against that endpoint.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// follower is one `spoolfs mount --follow` process and its mount point.
type follower struct {
	*proc
	dir   string
	admin string // its admin endpoint host:port
	vol   string
	conn  string // its FUSE connection (fusectl), to abort a hung mount
}

// startFollower starts a follower of volume on the cluster's replicas.
func (c *cluster) startFollower(volume, nodeID string, extra ...string) *follower {
	c.t.Helper()
	return startFollowerOn(c.t, c.addrs(), volume, nodeID, extra...)
}

// startFollowerOn starts `spoolfs mount --follow --replicas REPLICAS
// --node-id ID --admin ADDR VOLUME DIR` on a fresh mount point and waits
// until its mount answers. It is killed and its mount detached in
// t.Cleanup if still there.
func startFollowerOn(t *testing.T, replicas, volume, nodeID string, extra ...string) *follower {
	t.Helper()
	dir := mountPoint(t)
	admin := testsupport.FreeAddr(t)
	args := []string{"mount", "--follow", "--replicas", replicas, "--node-id", nodeID, "--admin", admin}
	args = append(append(args, extra...), volume, dir)
	p, err := startProc("follower "+nodeID, &testsupport.Buffer{}, args...)
	if err != nil {
		t.Fatal(err)
	}
	f := &follower{proc: p, dir: dir, admin: admin, vol: volume}
	t.Cleanup(func() { f.cleanup(t) })
	sp := &spoolfsProc{Dir: dir, cmd: p.cmd, stderr: p.out, exited: p.exited}
	if err := sp.waitServed(); err != nil {
		t.Fatalf("%s: %v\noutput:\n%s", p.name, err, lastLines(p.out.String(), 30))
	}
	f.conn = testsupport.FUSEConn(dir)
	return f
}

// path is a name inside the follower's mount.
func (f *follower) path(name string) string { return filepath.Join(f.dir, name) }

// cleanup kills a follower still running and detaches its mount.
func (f *follower) cleanup(t *testing.T) {
	if f.running() {
		f.kill9()
	}
	if isMounted(f.dir, "") {
		_ = unix.Unmount(f.dir, unix.MNT_DETACH)
	}
	if t.Failed() {
		t.Logf("%s output (last lines):\n%s", f.name, lastLines(f.out.String(), 40))
	}
}

// stop SIGTERMs the follower: it must unmount and exit 0.
func (f *follower) stop(t *testing.T) {
	t.Helper()
	if err := f.terminate(unmountDeadline); err != nil {
		t.Errorf("%s: %v", f.name, err)
	}
	if isMounted(f.dir, "") {
		t.Errorf("%s is still mounted after %s stopped", f.dir, f.name)
	}
}

// position is a follower's applied position as its /status reports it:
// the term of the last applied record and its lsn.
type position struct {
	Term, LSN uint64
}

// before says whether p is older than q, by (term, lsn): the order in
// which a follower may never go back (a new primary's term outranks any
// lsn of an older one, whose unacknowledged tail it may have dropped).
func (p position) before(q position) bool {
	return p.Term < q.Term || p.Term == q.Term && p.LSN < q.LSN
}

func (p position) String() string { return fmt.Sprintf("(term %d, lsn %d)", p.Term, p.LSN) }

// adminGet reads one path of an admin endpoint.
func adminGet(admin, path string) ([]byte, error) {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + admin + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return b, nil
}

// followerEntry is what the tests read of a follower volume in /status
// (admin.VolumeStatus with its follow part).
type followerEntry struct {
	Volume string `json:"volume"`
	Role   string `json:"role"` // "follower"; "primary" once promoted
	Term   uint64 `json:"term"` // of the last record applied
	Follow *struct {
		Source     string `json:"source"`
		Connected  bool   `json:"connected"`
		Applied    uint64 `json:"applied_lsn"`
		SourceLSN  uint64 `json:"source_lsn"`
		Resyncs    int    `json:"resyncs"`
		Reconnects int    `json:"reconnects"`
		Err        string `json:"error"`
	} `json:"follow"`
}

// status reads the follower's volume from its /status.
func (f *follower) status() (followerEntry, error) {
	b, err := adminGet(f.admin, "/status")
	if err != nil {
		return followerEntry{}, err
	}
	var st struct {
		Volumes []followerEntry `json:"volumes"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return followerEntry{}, fmt.Errorf("/status: %w", err)
	}
	for _, v := range st.Volumes {
		if v.Volume == f.vol && v.Follow != nil {
			return v, nil
		}
	}
	return followerEntry{}, fmt.Errorf("/status has no follower of volume %q: %s", f.vol, b)
}

// position is the follower's applied position.
func (f *follower) position() (position, error) {
	v, err := f.status()
	if err != nil {
		return position{}, err
	}
	return position{Term: v.Term, LSN: v.Follow.Applied}, nil
}

// goroutines returns the follower's goroutine dump (its pprof endpoint),
// or why it could not be read.
func (f *follower) goroutines() string {
	b, err := adminGet(f.admin, "/debug/pprof/goroutine?debug=2")
	if err != nil {
		return fmt.Sprintf("(goroutines of %s unreadable: %v)", f.name, err)
	}
	return string(b)
}

// dumpAndAbort is what a follower test does when calls on the follower's
// mount do not return: log the follower's goroutines (pprof, else
// SIGQUIT, which prints them to its output and ends it) and abort its FUSE
// connection, so that the stuck calls return and the test can end.
func (f *follower) dumpAndAbort(t *testing.T, why string) {
	t.Errorf("%s: dumping the goroutines of %s and aborting its mount", why, f.name)
	dump := f.goroutines()
	if strings.HasPrefix(dump, "(goroutines of") {
		_ = f.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-f.exited:
		case <-time.After(5 * time.Second):
		}
		dump = f.out.String()
	}
	t.Logf("goroutines of %s:\n%s", f.name, dump)
	if f.conn != "" {
		testsupport.AbortFUSE(t, f.conn)
	}
}

// promote runs `spoolfs promote VOLUME --admin ADDR` and returns its
// output and error (nil: exit 0).
func (f *follower) promote(timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, binPath(), "promote", f.vol, "--admin", f.admin).CombinedOutput()
	return string(out), err
}

// promoteHTTP asks the follower's admin endpoint itself (POST
// /promote?volume=V, what `spoolfs promote` does), for a test that must
// not start a process: a child closes its copies of the test's
// descriptors, and a close of one on a stopped primary's mount would hang.
func (f *follower) promoteHTTP(timeout time.Duration) (string, error) {
	cl := http.Client{Timeout: timeout}
	resp, err := cl.Post("http://"+f.admin+"/promote?volume="+f.vol, "", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("POST /promote: %s", resp.Status)
	}
	return string(b), err
}

// inoTree is a tree as the follower tests compare it: one line per entry
// with its inode number (the volume's, the same on primary and follower),
// type, mode, size, nlink, owner, symlink target, xattrs and content hash.
func inoTree(root string) ([]string, error) {
	var lines []string
	err := walkIno(root, "", &lines)
	sort.Strings(lines)
	return lines, err
}

func walkIno(root, rel string, lines *[]string) error {
	ents, err := os.ReadDir(filepath.Join(root, rel))
	if err != nil {
		return fmt.Errorf("readdir %s: %w", rel, err)
	}
	for _, e := range ents {
		path := filepath.Join(rel, e.Name())
		line, st, err := describeEntry(filepath.Join(root, path), path)
		if err != nil {
			return err
		}
		*lines = append(*lines, fmt.Sprintf("%s ino=%d", line, st.Ino))
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := walkIno(root, path, lines); err != nil {
				return err
			}
		}
	}
	return nil
}

// treesDiffer compares the trees at a (the primary) and b (the follower)
// and says how they differ (nil: equal).
func treesDiffer(a, b string) error {
	ta, err := inoTree(a)
	if err != nil {
		return fmt.Errorf("primary: %w", err)
	}
	tb, err := inoTree(b)
	if err != nil {
		return fmt.Errorf("follower: %w", err)
	}
	var d []string
	diffSorted(ta, tb, func(s string) {
		if len(d) < 20 {
			d = append(d, "only on the primary:  "+s)
		}
	}, func(s string) {
		if len(d) < 20 {
			d = append(d, "only on the follower: "+s)
		}
	})
	if len(d) > 0 {
		return fmt.Errorf("%d entries on the primary, %d on the follower, differences:\n%s", len(ta), len(tb), strings.Join(d, "\n"))
	}
	return nil
}

// waitSameTree waits until the follower's tree equals the primary's.
func waitSameTree(t *testing.T, primaryDir string, f *follower, d time.Duration, what string) {
	t.Helper()
	testsupport.WaitForErr(t, d, "the follower to show the primary's tree "+what, func() error {
		return treesDiffer(primaryDir, f.dir)
	})
}
