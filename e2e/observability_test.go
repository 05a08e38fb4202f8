package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// TestDashboardAndAlertSeries: every series the Grafana dashboard
// (deploy/grafana) and the alert rules (deploy/prometheus) name exists in
// the live /metrics of a running primary, a follower and the replicas
// (mTLS, so the certificate series are there too) after a scripted workload — create,
// write, close, rename, a getxattr that fails — and each /metrics passes
// `promtool check metrics`. A renamed or dropped metric fails here, not in
// an operator's empty panel or silent alert.
func TestDashboardAndAlertSeries(t *testing.T) {
	requireCluster(t)
	promtool := testsupport.RequireCmd(t, "promtool")
	want := deploySeries(t)
	if len(want) < 20 {
		t.Fatalf("only %d series found in deploy/: the extraction is broken", len(want))
	}

	certs := t.TempDir()
	spoolfs(t, 0, "certs", "ca", "--dir", certs)
	for _, id := range []string{"r1", "r2", "r3", "mx1", "mx2"} {
		spoolfs(t, 0, "certs", "node", "--ca", certs, "--id", id, "--host", "127.0.0.1")
	}
	tlsArgs := func(id string) []string {
		return []string{"--tls-ca", filepath.Join(certs, "ca.crt"),
			"--tls-cert", filepath.Join(certs, id+".crt"), "--tls-key", filepath.Join(certs, id+".key")}
	}
	admins := []string{testsupport.FreeAddr(t), testsupport.FreeAddr(t), testsupport.FreeAddr(t), testsupport.FreeAddr(t), testsupport.FreeAddr(t)}
	c := newClusterWith(t, 3, func(i int) []string {
		return append(tlsArgs(fmt.Sprintf("r%d", i+1)), "--admin", admins[i])
	})
	pr := c.startPrimary("obs", "mx1", append(tlsArgs("mx1"), "--admin", admins[3])...)
	// The follower (mount --follow, on the primary's command line).
	fl := c.startPrimary("obs", "mx2", append(tlsArgs("mx2"), "--follow", "--admin", admins[4])...)

	if err := os.WriteFile(pr.path("msg.tmp"), []byte("From: a\n\nhello\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(pr.path("msg.tmp"), pr.path("msg")); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Getxattr(pr.path("msg"), "user.none", make([]byte, 16)); !errors.Is(err, syscall.ENODATA) {
		t.Fatalf("getxattr: %v, want ENODATA", err)
	}

	// The follower applied the workload: its applied records and their
	// delay are exported once it did.
	testsupport.WaitFor(t, 15*time.Second, "the follower to apply the workload", func() bool {
		body := scrapeMetrics(t, admins[4])
		return strings.Contains(body, "spoolfs_follower_apply_delay_seconds_bucket") &&
			strings.Contains(body, `spoolfs_follower_lag_records{volume="obs"} 0`)
	})

	have := map[string]bool{}
	types := map[string]string{} // family → type, from # TYPE lines
	for i, addr := range admins {
		body := scrapeMetrics(t, addr)
		for _, line := range strings.Split(body, "\n") {
			if f := strings.Fields(line); len(f) == 4 && f[1] == "TYPE" {
				types[f[2]] = f[3]
			}
			if name, _, ok := strings.Cut(line, "{"); ok && !strings.HasPrefix(line, "#") {
				have[name] = true
			} else if name, _, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
				have[name] = true
			}
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics on process %d (%s): %v\n%s", i+1, addr, err, out)
		}
	}
	var missing []string
	for name, where := range want {
		if !have[name] {
			missing = append(missing, name+" (named in "+where+")")
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("no series %s in the live /metrics of the primary and replicas", m)
	}
	checkMetricsTable(t, types)
	fl.stop(t)
	pr.stop(t)
}

// tableRowRE is a row of docs/operations.md's metrics table.
var tableRowRE = regexp.MustCompile("(?m)^\\| `(spoolfs_[a-z0-9_]+)` \\| ([a-z]+) \\|")

// checkMetricsTable: docs/operations.md's metrics table lists every
// spoolfs family the live processes export, with its type, and nothing
// else.
func checkMetricsTable(t *testing.T, types map[string]string) {
	t.Helper()
	b, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := map[string]string{}
	for _, m := range tableRowRE.FindAllStringSubmatch(string(b), -1) {
		doc[m[1]] = m[2]
	}
	if len(doc) < 20 {
		t.Fatalf("%d rows found in docs/operations.md's metrics table: the pattern is broken", len(doc))
	}
	for name, typ := range types {
		if !strings.HasPrefix(name, "spoolfs_") {
			continue
		}
		if doc[name] == "" {
			t.Errorf("docs/operations.md's metrics table lacks %s (%s)", name, typ)
		} else if doc[name] != typ {
			t.Errorf("docs/operations.md says %s is a %s; it is a %s", name, doc[name], typ)
		}
	}
	for name := range doc {
		if types[name] == "" {
			t.Errorf("docs/operations.md's metrics table lists %s, which no process exports", name)
		}
	}
}

// seriesRE finds metric names in PromQL: ours, and the process collector's.
var seriesRE = regexp.MustCompile(`\b(?:spoolfs|process|go)_[a-z0-9_]+\b`)

// deploySeries returns the metric names the dashboards' queries and the
// alert rules' expressions use, each with the file that names it.
func deploySeries(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	add := func(file, expr string) {
		for _, name := range seriesRE.FindAllString(expr, -1) {
			out[name] = filepath.Base(file)
		}
	}
	dashboards, _ := filepath.Glob("../deploy/grafana/*.json")
	rules, _ := filepath.Glob("../deploy/prometheus/*.yml")
	if len(dashboards) == 0 || len(rules) == 0 {
		t.Fatalf("no dashboards (%v) or rules (%v) under ../deploy", dashboards, rules)
	}
	for _, f := range dashboards {
		var d struct {
			Panels []struct {
				Targets []struct{ Expr string }
			}
			Templating struct{ List []struct{ Query any } }
		}
		readJSON(t, f, &d)
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				add(f, tg.Expr)
			}
		}
		for _, v := range d.Templating.List {
			if q, ok := v.Query.(string); ok {
				add(f, q)
			}
		}
	}
	for _, f := range rules {
		if strings.HasSuffix(f, "_test.yml") {
			continue // promtool's unit tests: made-up series
		}
		var r struct {
			Groups []struct {
				Rules []struct{ Expr string }
			}
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range r.Groups {
			for _, rule := range g.Rules {
				add(f, rule.Expr)
			}
		}
	}
	return out
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func scrapeMetrics(t *testing.T, addr string) string {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET %s/metrics: %v", addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics: %d %v", addr, resp.StatusCode, err)
	}
	return string(b)
}
