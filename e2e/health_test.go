package e2e

// Readiness is durability (issue 12): /readyz of a primary and the exit
// status of `spoolfs status` follow the replicas that answer, against
// real processes on loopback.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// readyBody is the part of /readyz's JSON the test reads.
type readyBody struct {
	Ready   bool `json:"ready"`
	Volumes []struct {
		Role      string `json:"role"`
		Term      uint64 `json:"term"`
		W         int    `json:"w"`
		Answering int    `json:"replicas_answering"`
		Reason    string `json:"reason"`
	} `json:"volumes"`
}

// readyz asks an admin endpoint for /readyz.
func readyz(addr string) (int, readyBody, string, error) {
	var rb readyBody
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, rb, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, rb, "", err
	}
	if err := json.Unmarshal(b, &rb); err != nil || len(rb.Volumes) != 1 {
		return resp.StatusCode, rb, string(b), fmt.Errorf("/readyz body: %v: %s", err, b)
	}
	return resp.StatusCode, rb, string(b), nil
}

// waitReady polls /readyz until it answers code, within limit; it returns
// the last body and how long it took.
func waitReady(t *testing.T, addr string, code int, limit time.Duration) (readyBody, time.Duration) {
	t.Helper()
	start := time.Now()
	var last readyBody
	testsupport.WaitForErr(t, limit, fmt.Sprintf("/readyz %d", code), func() error {
		got, rb, body, err := readyz(addr)
		if err != nil {
			return err
		}
		last = rb
		if got != code {
			return fmt.Errorf("%d %s", got, body)
		}
		return nil
	})
	return last, time.Since(start)
}

// status runs `spoolfs status ARGS` and returns its exit status and output.
func status(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(binPath(), append([]string{"status"}, args...)...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("spoolfs status: %v", err)
	return 0, ""
}

// TestReadinessFollowsQuorum: a primary with W=2 of 3 replicas. /readyz
// is 200 and `spoolfs status` exits 0 while all answer; two replicas
// stopped with SIGSTOP (their connections stay open and silent, as in a
// partition) turn /readyz to 503 within 5 s, saying "below quorum", and
// status exits 4; SIGCONT brings 200 back within 5 s. Another node taking
// the volume turns the first one's /readyz to 503 "fenced" and status to
// exit 3.
func TestReadinessFollowsQuorum(t *testing.T) {
	requireCluster(t)
	c := newCluster(t, 3)
	const vol = "ready"
	admin := testsupport.FreeAddr(t)
	p1 := c.startPrimary(vol, "p1", "--admin", admin, "--flush-timeout", "2s")
	waitReady(t, admin, http.StatusOK, 10*time.Second) // 2 answering are enough
	var rb readyBody
	testsupport.WaitForErr(t, 10*time.Second, "3 replicas answering", func() error {
		code, b, body, err := readyz(admin)
		if err == nil && (code != http.StatusOK || b.Volumes[0].Answering != 3) {
			err = fmt.Errorf("%d %s", code, body)
		}
		rb = b
		return err
	})
	if v := rb.Volumes[0]; v.Role != "primary" || v.W != 2 || v.Term == 0 || v.Reason != "" {
		t.Errorf("/readyz with every replica up: %+v", v)
	}
	code, out := status(t, "--admin", admin, "-o", "json")
	var ns struct {
		Volumes []struct {
			Role      string `json:"role"`
			Answering int    `json:"replicas_answering"`
			Replicas  []struct {
				Quorum bool `json:"quorum"`
			} `json:"replicas"`
		} `json:"volumes"`
	}
	if err := json.Unmarshal([]byte(out), &ns); code != 0 || err != nil || len(ns.Volumes) != 1 || ns.Volumes[0].Answering != 3 {
		t.Fatalf("status -o json, healthy: exit %d, %v\n%s", code, err, out)
	}
	for i, r := range ns.Volumes[0].Replicas {
		if !r.Quorum {
			t.Errorf("status -o json, healthy: replica %d not in the quorum", i)
		}
	}

	stopped := []int{0, 1}
	signal := func(sig syscall.Signal) {
		for _, i := range stopped {
			if err := c.reps[i].proc.cmd.Process.Signal(sig); err != nil {
				t.Errorf("replica %d: %v: %v", i, sig, err)
			}
		}
	}
	t.Cleanup(func() { signal(syscall.SIGCONT) }) // a failed test leaves no stopped process behind
	signal(syscall.SIGSTOP)
	rb, took := waitReady(t, admin, http.StatusServiceUnavailable, 5*time.Second)
	t.Logf("/readyz 503 %v after two replicas stopped: %+v", took.Round(time.Millisecond), rb.Volumes[0])
	if v := rb.Volumes[0]; v.Answering != 1 || !strings.Contains(v.Reason, "below quorum") {
		t.Errorf("/readyz below quorum: %+v", v)
	}
	code, out = status(t, "--admin", admin)
	if code != 4 || !strings.Contains(out, "below quorum") || !strings.Contains(out, "QUORUM") {
		t.Errorf("status below quorum: exit %d, want 4\n%s", code, out)
	}
	t.Logf("spoolfs status below quorum: exit %d\n%s", code, out)
	if code, out := status(t, "--admin", admin, "--json"); code != 4 || !strings.Contains(out, `"replicas_answering": 1`) {
		t.Errorf("status --json below quorum: exit %d, want 4\n%s", code, out)
	}

	signal(syscall.SIGCONT)
	_, took = waitReady(t, admin, http.StatusOK, 5*time.Second)
	t.Logf("/readyz 200 %v after the replicas resumed", took.Round(time.Millisecond))
	if code, out := status(t, "--admin", admin); code != 0 {
		t.Errorf("status after the replicas resumed: exit %d, want 0\n%s", code, out)
	}

	p2 := c.startPrimary(vol, "p2")
	rb, took = waitReady(t, admin, http.StatusServiceUnavailable, 5*time.Second)
	t.Logf("/readyz of the deposed primary 503 %v after another took the volume: %+v", took.Round(time.Millisecond), rb.Volumes[0])
	if v := rb.Volumes[0]; v.Role != "fenced" || !strings.Contains(v.Reason, "fenced") {
		t.Errorf("/readyz fenced: %+v", v)
	}
	if code, out := status(t, "--admin", admin); code != 3 || !strings.Contains(out, "fenced") {
		t.Errorf("status fenced: exit %d, want 3\n%s", code, out)
	}
	p2.stop(t)
	p1.stop(t)
}
