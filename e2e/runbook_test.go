package e2e

// The runbooks of docs/operations.md ("Runbooks"), played on real
// processes as an operator would: the commands they run and what they see.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// writeMessages writes n files name-000.. with known content; each close
// returns once the file is on W replicas.
func writeMessages(t *testing.T, pr *primary, prefix string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s-%03d", prefix, i)
		if err := os.WriteFile(pr.path(name), []byte("message "+name), 0o600); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
	}
}

// checkMessages fails unless the mount holds exactly the files named.
func checkMessages(t *testing.T, pr *primary, want map[string]bool) {
	t.Helper()
	ents, err := os.ReadDir(pr.dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, e := range ents {
		got[e.Name()] = true
		b, err := os.ReadFile(pr.path(e.Name()))
		if err != nil || string(b) != "message "+e.Name() {
			t.Errorf("%s: %q, %v", e.Name(), b, err)
		}
	}
	for n := range want {
		if !got[n] {
			t.Errorf("%s missing", n)
		}
	}
	for n := range got {
		if !want[n] {
			t.Errorf("%s present, not expected", n)
		}
	}
}

func msgNames(prefix string, n int, into map[string]bool) map[string]bool {
	for i := 0; i < n; i++ {
		into[fmt.Sprintf("%s-%03d", prefix, i)] = true
	}
	return into
}

// waitSameLSN waits until the replicas at addrs hold the volume at one
// lsn, above 0.
func waitSameLSN(t *testing.T, vol string, addrs ...string) {
	t.Helper()
	testsupport.WaitForErr(t, 60*time.Second, "replicas "+strings.Join(addrs, ", ")+" at one lsn", func() error {
		var lsns []uint64
		for _, a := range addrs {
			lsns = append(lsns, replicaLSN(a, vol))
		}
		for _, l := range lsns {
			if l == 0 || l != lsns[0] {
				return fmt.Errorf("lsns %v", lsns)
			}
		}
		return nil
	})
}

// TestRunbookReplaceAndMove plays "Replace a dead replica" and "Move the
// replica set": replica 3 dies with its disk; a new empty replica on the
// same address gets the volume by resync while the primary serves; then
// replica 1 moves to a new address by a restart of the primary with the
// new --replicas, after `spoolfs status --replicas` showed the two kept
// replicas at one lsn. No file is lost or changed.
func TestRunbookReplaceAndMove(t *testing.T) {
	requireCluster(t)
	const vol = "mx1-spool"
	c := newCluster(t, 3)
	admin := testsupport.FreeAddr(t)
	pr := c.startPrimary(vol, "mx1", "--admin", admin)
	writeMessages(t, pr, "a", 20)

	c.kill(2)
	if err := os.RemoveAll(c.reps[2].data); err != nil {
		t.Fatal(err)
	}
	writeMessages(t, pr, "b", 20) // W=2: closes still succeed
	code, out := status(t, "--admin", admin)
	t.Logf("spoolfs status with replica 3 dead: exit %d\n%s", code, out)

	c.start(2) // the same command line, an empty --data
	waitSameLSN(t, vol, c.reps[0].addr, c.reps[2].addr)
	testsupport.WaitForErr(t, 30*time.Second, "status healthy with replica 3 resynced", func() error {
		if code, out = status(t, "--admin", admin); code != 0 || !strings.Contains(out, "3/3") {
			return fmt.Errorf("exit %d\n%s", code, out)
		}
		return nil
	})
	t.Logf("spoolfs status after the new replica 3 resynced: exit %d\n%s", code, out)
	if rs := replicaStatus(c.reps[2].addr, vol); rs == nil || rs.Inodes != 41 {
		t.Fatalf("new replica 3 holds %v, want the root and 40 files", rs)
	}

	// Move replica 1 to a new address: stop the primary, check the kept
	// replicas hold everything, restart the primary with the new list.
	pr.stop(t)
	code, out = status(t, "--replicas", c.addrs())
	t.Logf("spoolfs status --replicas with the primary stopped: exit %d\n%s", code, out)
	if l2, l3 := replicaLSN(c.reps[1].addr, vol), replicaLSN(c.reps[2].addr, vol); l2 == 0 || l2 != l3 {
		t.Fatalf("kept replicas at lsns %d and %d, want one lsn", l2, l3)
	}
	c.kill(0)
	c.reps[0] = &replicaProc{addr: testsupport.FreeAddr(t), data: filepath.Join(t.TempDir(), "replica-1-new"), log: c.reps[0].log}
	c.start(0)
	pr = c.startPrimary(vol, "mx1", "--admin", admin)
	checkMessages(t, pr, msgNames("b", 20, msgNames("a", 20, map[string]bool{})))
	waitSameLSN(t, vol, c.reps[0].addr, c.reps[1].addr, c.reps[2].addr)
	writeMessages(t, pr, "c", 5)
	code, out = status(t, "--admin", admin)
	t.Logf("spoolfs status after the move: exit %d\n%s", code, out)
	if code != 0 {
		t.Errorf("status after the move: exit %d, want 0", code)
	}
}

// TestRunbookBackupRestore plays "Back up and restore a volume": replica
// 2 is stopped, its data directory copied with cp -a, and started again
// (the primary keeps serving on the other two); later the whole replica
// set is lost, the copy becomes replica 1's data directory, the others
// start empty, and a primary mounts the volume as it was at the copy.
func TestRunbookBackupRestore(t *testing.T) {
	requireCluster(t)
	const vol = "mx1-spool"
	c := newCluster(t, 3)
	pr := c.startPrimary(vol, "mx1")
	writeMessages(t, pr, "a", 20)

	backup := filepath.Join(t.TempDir(), "backup")
	if err := c.reps[1].terminate(10 * time.Second); err != nil {
		t.Fatalf("stop replica 2: %v", err)
	}
	if out, err := exec.Command("cp", "-a", c.reps[1].data, backup).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	c.start(1)
	ls, _ := exec.Command("ls", "-l", backup).CombinedOutput()
	t.Logf("the backup:\n%s", ls)

	writeMessages(t, pr, "b", 10) // after the backup: not in it
	if err := os.Remove(pr.path("a-000")); err != nil {
		t.Fatal(err)
	}

	pr.stop(t)
	for i, r := range c.reps {
		c.kill(i)
		if err := os.RemoveAll(r.data); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("cp", "-a", backup, c.reps[0].data).CombinedOutput(); err != nil {
		t.Fatalf("restore: cp -a: %v\n%s", err, out)
	}
	for i := range c.reps {
		c.start(i)
	}
	pr = c.startPrimary(vol, "mx1")
	checkMessages(t, pr, msgNames("a", 20, map[string]bool{}))
	waitSameLSN(t, vol, c.reps[0].addr, c.reps[1].addr, c.reps[2].addr)
	var buf bytes.Buffer
	for _, r := range c.reps {
		fmt.Fprintf(&buf, "%s: %v\n", r.addr, replicaStatus(r.addr, vol))
	}
	t.Logf("replicas after the restore:\n%s", buf.String())
}

// runSpoolfs runs the binary with args and fails the test unless it exits 0;
// it returns the output.
func runSpoolfs(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(binPath(), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("spoolfs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestRunbookDumpRestore plays the dump and restore of "Back up and
// restore a volume": `spoolfs dump` from one replica while the primary
// serves; more writes and a delete; the primary stopped, `spoolfs
// restore` to the same replicas rolls the volume back to the dump; and
// the same dump restored to a new, empty replica set mounts the same.
func TestRunbookDumpRestore(t *testing.T) {
	requireCluster(t)
	const vol = "mx1-spool"
	c := newCluster(t, 3)
	pr := c.startPrimary(vol, "mx1")
	writeMessages(t, pr, "a", 20)
	waitSameLSN(t, vol, c.reps[0].addr, c.reps[1].addr, c.reps[2].addr)

	file := filepath.Join(t.TempDir(), vol+".dump")
	t.Logf("$ spoolfs dump %s --replica %s --out %s\n%s", vol, c.reps[0].addr, file,
		runSpoolfs(t, "dump", vol, "--replica", c.reps[0].addr, "--out", file))
	writeMessages(t, pr, "b", 10) // after the dump: not in it
	if err := os.Remove(pr.path("a-000")); err != nil {
		t.Fatal(err)
	}
	pr.stop(t)

	t.Logf("$ spoolfs restore %s --replicas %s --in %s\n%s", vol, c.addrs(), file,
		runSpoolfs(t, "--log-level", "warn", "restore", vol, "--replicas", c.addrs(), "--in", file))
	pr = c.startPrimary(vol, "mx1")
	checkMessages(t, pr, msgNames("a", 20, map[string]bool{}))
	pr.stop(t)

	fresh := newCluster(t, 3)
	runSpoolfs(t, "--log-level", "warn", "restore", vol, "--replicas", fresh.addrs(), "--in", file)
	pr = fresh.startPrimary(vol, "mx2")
	checkMessages(t, pr, msgNames("a", 20, map[string]bool{}))
}
