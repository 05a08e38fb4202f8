package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// traceW is the write quorum of a volume on three replicas.
const traceW = 2

// TestFollowOneMessage follows one file's create → flush → replica fsync
// across three processes by one request id, as docs/operations.md
// ("Following one message") tells an operator to: a primary and three
// replicas, real binaries on loopback, each logging JSON at debug level
// to its own file. The primary's access log names the new inode on the
// create line; the flush line of that inode gives the request id; the
// primary logs the end of that id's durability wait; at least W replicas
// log a "batch durable" line naming the id, with its LSNs and fsync time;
// the release line names the inode whose handle it closed.
func TestFollowOneMessage(t *testing.T) {
	requireCluster(t)
	logDir := t.TempDir()
	debug := []string{"--log-level", "debug", "--log-format", "json"}
	var addrs []string
	for i := range 3 {
		addr, data := testsupport.FreeAddr(t), filepath.Join(t.TempDir(), "data")
		p := startLogged(t, fmt.Sprintf("replica %d", i+1), replicaLog(logDir, i),
			append([]string{"replica", "--listen", addr, "--data", data}, debug...)...)
		testsupport.WaitFor(t, replicaDeadline, p.name+" listening", func() bool {
			if !p.running() {
				t.Fatalf("%s exited: %v", p.name, p.err)
			}
			return dials(addr)
		})
		addrs = append(addrs, addr)
	}
	dir := mountPoint(t)
	pp := startLogged(t, "primary", filepath.Join(logDir, "primary.log"),
		primaryArgs("spool", dir, strings.Join(addrs, ","), "mx1", append([]string{"--access-log"}, debug...))...)
	pr := &primary{proc: pp, dir: dir}
	t.Cleanup(func() { pr.cleanup(t) })
	sp := &spoolfsProc{Dir: dir, cmd: pp.cmd, stderr: pp.out, exited: pp.exited}
	if err := sp.waitServed(); err != nil {
		t.Fatalf("primary: %v", err)
	}

	// What a mail server does with a new message: create, write, close.
	if err := os.WriteFile(pr.path("msg-1"), []byte("Subject: trace me\r\n\r\nhello\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	primaryLog := filepath.Join(logDir, "primary.log")
	var ino, flushReq json.Number
	testsupport.WaitFor(t, 10*time.Second, "the create, flush and release lines of msg-1", func() bool {
		lines := jsonLines(t, primaryLog)
		create := findLine(lines, map[string]string{"msg": "fuse op", "op": "create", "name": "msg-1", "errno": "0"})
		if create == nil {
			return false
		}
		ino = jsonNum(create["new_ino"])
		flush := findLine(lines, map[string]string{"msg": "fuse op", "op": "flush", "ino": ino.String(), "errno": "0"})
		release := findLine(lines, map[string]string{"msg": "fuse op", "op": "release", "ino": ino.String()})
		if flush == nil || release == nil {
			return false
		}
		flushReq = jsonNum(flush["req"])
		return true
	})
	t.Logf("msg-1 is inode %s; its FLUSH is request %s", ino, flushReq)
	testsupport.WaitFor(t, 10*time.Second, "the primary's end of the wait for request "+flushReq.String(), func() bool {
		return findLine(jsonLines(t, primaryLog), map[string]string{"msg": "durability wait done", "req": flushReq.String(), "op": "flush"}) != nil
	})
	var holders []int
	testsupport.WaitFor(t, 10*time.Second, fmt.Sprintf("request %s in %d replicas' batch lines", flushReq, traceW), func() bool {
		holders = holders[:0]
		for i := range addrs {
			for _, l := range jsonLines(t, replicaLog(logDir, i)) {
				if l["msg"] != "batch durable" || !slices.Contains(numbers(l["reqs"]), flushReq) {
					continue
				}
				if l["volume"] != "spool" || l["fsync"] == nil || jsonNum(l["first_lsn"]).String() == "" {
					t.Fatalf("replica %d: batch line %v lacks volume, LSNs or fsync", i+1, l)
				}
				holders = append(holders, i+1)
				t.Logf("replica %d: %v", i+1, l)
				break
			}
		}
		return len(holders) >= traceW
	})
	t.Logf("request %s made durable on replicas %v", flushReq, holders)
}

// replicaLog is the log file of replica i.
func replicaLog(dir string, i int) string {
	return filepath.Join(dir, fmt.Sprintf("replica-%d.log", i+1))
}

// dials says whether something accepts TCP connections on addr.
func dials(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// startLogged runs the spoolfs binary with its output appended to the file
// logPath (not a pipe: a file is what an operator greps). The process is
// killed when the test ends; a failed test shows the file's last lines.
func startLogged(t *testing.T, name, logPath string, args ...string) *proc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, out: &testsupport.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(binPath(), args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); f.Close(); close(p.exited) }()
	t.Cleanup(func() {
		if p.running() {
			p.kill9()
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log %s (last lines):\n%s", name, logPath, lastLines(string(b), 25))
		}
	})
	return p
}

// jsonLines reads a JSON log file, one object a line; lines that are not
// JSON (none expected) are skipped. Numbers stay json.Number.
func jsonLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		d := json.NewDecoder(strings.NewReader(sc.Text()))
		d.UseNumber()
		var m map[string]any
		if d.Decode(&m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// findLine returns the last line whose fields print as want says, or nil.
func findLine(lines []map[string]any, want map[string]string) map[string]any {
	for i := len(lines) - 1; i >= 0; i-- {
		ok := true
		for k, v := range want {
			if fmt.Sprint(lines[i][k]) != v {
				ok = false
				break
			}
		}
		if ok {
			return lines[i]
		}
	}
	return nil
}

// jsonNum is a JSON number field ("" when it is not one).
func jsonNum(v any) json.Number {
	n, _ := v.(json.Number)
	return n
}

// numbers is a JSON array of numbers.
func numbers(v any) []json.Number {
	a, _ := v.([]any)
	out := make([]json.Number, 0, len(a))
	for _, x := range a {
		out = append(out, jsonNum(x))
	}
	return out
}
