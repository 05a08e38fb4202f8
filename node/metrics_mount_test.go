package node

import (
	"errors"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
)

// TestMetricsAfterWorkload scrapes /metrics of an embedded cluster before
// and after a scripted workload on its real mount — create, write and
// close one file, look up a name that is not there, read an extended
// attribute the file lacks — and checks what the workload added: the
// create counted once, with its latency in the op histogram; the missed
// lookup counted and timed (a negative entry, so no errno); the getxattr
// under getxattr × ENODATA, timed like any op; the close's
// durability wait under flush × ok; every histogram's buckets cumulative
// up to +Inf. The process-wide metrics (internal/metrics) live on across
// the package's tests, so it compares differences.
func TestMetricsAfterWorkload(t *testing.T) {
	requireFUSE(t)
	_, addr, _ := startEmbedded(t, t.TempDir(), newMountDir(t), zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	ns := fetchStatus(t, addr)
	mnt := ns.Volumes[0].Dir
	before := scrape(t, addr)
	if err := writeFileRaw(filepath.Join(mnt, "msg-metrics"), []byte("From: a\n\nhello\n")); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(mnt, "no-such-message"), &st); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("stat of a missing name: %v, want ENOENT", err)
	}
	if _, err := unix.Getxattr(filepath.Join(mnt, "msg-metrics"), "user.none", make([]byte, 64)); !errors.Is(err, syscall.ENODATA) {
		t.Fatalf("getxattr of a missing attribute: %v, want ENODATA", err)
	}
	after := scrape(t, addr)
	d := func(name string, labels ...string) float64 {
		return after.value(t, name, labels...) - before.value(t, name, labels...)
	}
	if got := d("spoolfs_fuse_ops_total", "op", "create"); got != 1 {
		t.Errorf("creates counted: %v, want 1", got)
	}
	if got := d("spoolfs_fuse_op_duration_seconds_count", "op", "create"); got != 1 {
		t.Errorf("create latencies observed: %v, want 1", got)
	}
	if got := d("spoolfs_fuse_op_duration_seconds_bucket", "op", "create", "le", "30"); got != 1 {
		t.Errorf("create latencies at or under 30s: %v, want 1", got)
	}
	// The create's own lookup of the new name misses too: at least 2.
	lookups := d("spoolfs_fuse_ops_total", "op", "lookup")
	if lookups < 2 {
		t.Errorf("lookups counted: %v, want at least 2", lookups)
	}
	if got := d("spoolfs_fuse_op_duration_seconds_count", "op", "lookup"); got != lookups {
		t.Errorf("lookup latencies %v, lookups %v: want the same", got, lookups)
	}
	// The kernel asks for security.capability before the write as well.
	if got := d("spoolfs_fuse_errors_total", "op", "getxattr", "errno", "ENODATA"); got < 1 {
		t.Errorf("getxattr ENODATA errors: %v, want at least 1", got)
	}
	if got := d("spoolfs_fuse_op_duration_seconds_count", "op", "getxattr"); got != d("spoolfs_fuse_ops_total", "op", "getxattr") || got < 1 {
		t.Errorf("getxattr latencies %v, want one per getxattr (errors are timed too)", got)
	}
	if got := d("spoolfs_fuse_errors_total", "op", "create", "errno", "ENOENT"); got != 0 {
		t.Errorf("create errors: %v", got)
	}
	if got := d("spoolfs_durability_wait_seconds_count", "op", "flush", "outcome", "ok"); got < 1 {
		t.Errorf("durable flush waits: %v, want at least 1 (the close)", got)
	}
	if got := d("spoolfs_durability_wait_seconds_count", "op", "flush", "outcome", "not_durable"); got != 0 {
		t.Errorf("failed flush waits: %v", got)
	}
	after.checkBuckets(t)
}

// scraped is one /metrics, parsed.
type scraped map[string]*dto.MetricFamily

func scrape(t *testing.T, addr string) scraped {
	t.Helper()
	code, body := get(t, addr, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// value is the sample of name (a family, or a histogram's _count or
// _bucket) whose labels include the pairs given; 0 when absent.
func (s scraped) value(t *testing.T, name string, pairs ...string) float64 {
	t.Helper()
	fam, suffix := s[name], ""
	for _, sfx := range []string{"_count", "_bucket"} {
		if fam == nil && strings.HasSuffix(name, sfx) {
			fam, suffix = s[strings.TrimSuffix(name, sfx)], sfx
		}
	}
	if fam == nil {
		return 0
	}
	want := map[string]string{}
	for i := 0; i+1 < len(pairs); i += 2 {
		want[pairs[i]] = pairs[i+1]
	}
	le, byLE := want["le"]
	delete(want, "le")
	var sum float64
	for _, m := range fam.GetMetric() {
		if !hasLabels(m, want) {
			continue
		}
		switch {
		case suffix == "_count":
			sum += float64(m.GetHistogram().GetSampleCount())
		case suffix == "_bucket" && byLE:
			for _, b := range m.GetHistogram().GetBucket() {
				if model.FloatString(b.GetUpperBound()).String() == le {
					sum += float64(b.GetCumulativeCount())
				}
			}
		default:
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// checkBuckets: every histogram's buckets never decrease and end at most
// at its count (the text form's +Inf is the count).
func (s scraped) checkBuckets(t *testing.T) {
	t.Helper()
	for name, fam := range s {
		if fam.GetType() != dto.MetricType_HISTOGRAM || !strings.HasPrefix(name, "spoolfs_") {
			continue
		}
		for _, m := range fam.GetMetric() {
			h, prev := m.GetHistogram(), uint64(0)
			for _, b := range h.GetBucket() {
				if b.GetCumulativeCount() < prev || (math.IsInf(b.GetUpperBound(), 1) && b.GetCumulativeCount() != h.GetSampleCount()) {
					t.Errorf("%s %v: buckets not cumulative up to the count", name, m.GetLabel())
				}
				prev = b.GetCumulativeCount()
			}
			if prev > h.GetSampleCount() {
				t.Errorf("%s %v: last bucket %d > count %d", name, m.GetLabel(), prev, h.GetSampleCount())
			}
		}
	}
}
