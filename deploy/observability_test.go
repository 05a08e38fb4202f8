package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// TestAlertRules: `promtool check rules` passes on every rule file in
// prometheus/ and `promtool test rules` on their unit tests (the alerts
// fire on the series /metrics exports and stay quiet on normal errnos).
// e2e's TestDashboardAndAlertSeries checks the series exist in a live
// /metrics.
func TestAlertRules(t *testing.T) {
	promtool := testsupport.RequireCmd(t, "promtool")
	files, _ := filepath.Glob("prometheus/*.yml")
	var rules, tests []string
	for _, f := range files {
		if filepath.Base(f) == "prometheus.yml" {
			checkScrapeConfig(t, f)
			continue
		}
		if strings.HasSuffix(f, "_test.yml") {
			tests = append(tests, f)
		} else {
			rules = append(rules, f)
		}
	}
	if len(rules) == 0 || len(tests) == 0 {
		t.Fatalf("rule files %v, their tests %v: want both", rules, tests)
	}
	runTool(t, promtool, append([]string{"check", "rules"}, rules...)...)
	runTool(t, promtool, append([]string{"test", "rules"}, tests...)...)
}

// checkScrapeConfig: the example Prometheus configuration loads rule
// files that exist and looks for pods in the namespace of the manifests.
func checkScrapeConfig(t *testing.T, path string) {
	t.Helper()
	var cfg struct {
		RuleFiles     []string `json:"rule_files"`
		ScrapeConfigs []struct {
			KubernetesSD []struct {
				Namespaces struct{ Names []string }
			} `json:"kubernetes_sd_configs"`
		} `json:"scrape_configs"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(cfg.RuleFiles) == 0 {
		t.Errorf("%s loads no rule files", path)
	}
	for _, r := range cfg.RuleFiles {
		if _, err := os.Stat(filepath.Join(filepath.Dir(path), r)); err != nil {
			t.Errorf("%s: rule file %s: %v", path, r, err)
		}
	}
	var ns corev1.Namespace
	b, err = os.ReadFile("kubernetes/base/namespace.yaml")
	if err == nil {
		err = yaml.Unmarshal(b, &ns)
	}
	if err != nil {
		t.Fatal(err)
	}
	k8s := 0
	for _, sc := range cfg.ScrapeConfigs {
		for _, sd := range sc.KubernetesSD {
			k8s++
			if !slices.Equal(sd.Namespaces.Names, []string{ns.Name}) {
				t.Errorf("%s: scrapes pods in %v, the manifests use namespace %s", path, sd.Namespaces.Names, ns.Name)
			}
		}
	}
	if k8s == 0 {
		t.Errorf("%s: no Kubernetes pod discovery", path)
	}
}

// TestDashboardQueries: every query of the Grafana dashboards parses as
// PromQL — each is checked by promtool as a recording rule, with
// Grafana's variables replaced by what they stand for — and every panel
// has a unique id, a title and a place on the grid.
func TestDashboardQueries(t *testing.T) {
	promtool := testsupport.RequireCmd(t, "promtool")
	files, _ := filepath.Glob("grafana/*.json")
	if len(files) == 0 {
		t.Fatal("no dashboards in grafana/")
	}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	vars := strings.NewReplacer("$__rate_interval", "5m", "$volume", ".*", "$instance", ".*")
	n := 0
	for _, f := range files {
		var d struct {
			UID    string
			Panels []struct {
				ID      int
				Type    string
				Title   string
				GridPos *struct{ W, H int }
				Targets []struct{ Expr string }
			}
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if d.UID == "" {
			t.Errorf("%s: no uid", f)
		}
		ids := map[int]bool{}
		for _, p := range d.Panels {
			if ids[p.ID] || p.Title == "" || p.GridPos == nil || p.GridPos.W == 0 {
				t.Errorf("%s: panel %d %q: duplicate id, no title or no grid position", f, p.ID, p.Title)
			}
			ids[p.ID] = true
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", f, p.Title)
			}
			for _, tg := range p.Targets {
				expr, _ := json.Marshal(vars.Replace(tg.Expr)) // a JSON string is a YAML string
				n++
				fmt.Fprintf(&rules, "      - record: dashboard:q%d\n        expr: %s\n", n, expr)
			}
		}
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(path, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	runTool(t, promtool, "check", "rules", path)
}

func runTool(t *testing.T, tool string, args ...string) {
	t.Helper()
	out, err := exec.Command(tool, args...).CombinedOutput()
	if err != nil {
		t.Errorf("%s %s: %v\n%s", filepath.Base(tool), strings.Join(args, " "), err, out)
	}
}

// TestWorkloadsScraped: every pod whose spoolfs serves --admin is scraped
// — prometheus.io/scrape, and prometheus.io/port naming the --admin port,
// which the container exposes — so its /metrics reaches the dashboard and
// the alerts.
func TestWorkloadsScraped(t *testing.T) {
	found := 0
	for _, d := range loadDocs(t) {
		var tmpl *corev1.PodTemplateSpec
		switch o := d.obj.(type) {
		case *appsv1.StatefulSet:
			tmpl = &o.Spec.Template
		case *appsv1.Deployment:
			tmpl = &o.Spec.Template
		case *appsv1.DaemonSet:
			tmpl = &o.Spec.Template
		default:
			continue
		}
		for _, c := range tmpl.Spec.Containers {
			admin := flagValue(append(slices.Clone(c.Command), c.Args...), "--admin")
			if admin == "" {
				continue
			}
			found++
			_, port, _ := strings.Cut(admin, ":")
			a := tmpl.Annotations
			if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != port || a["prometheus.io/path"] != "/metrics" {
				t.Errorf("%s: container %s serves --admin %s but the pod's scrape annotations are %v", d, c.Name, admin, a)
			}
			exposed := false
			for _, p := range c.Ports {
				exposed = exposed || strconv.Itoa(int(p.ContainerPort)) == port
			}
			if !exposed {
				t.Errorf("%s: container %s does not expose its admin port %s", d, c.Name, port)
			}
		}
	}
	if found < 2 {
		t.Errorf("%d containers serve --admin: want the replicas and the mail pods'", found)
	}
}
