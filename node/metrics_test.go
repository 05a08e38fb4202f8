package node

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// TestTLSMetrics: /metrics reports the material's Status — the expiry of
// the certificate in use and its reloads used and kept out
// (internal/tlsid's TestTLSReload checks the counts themselves).
func TestTLSMetrics(t *testing.T) {
	_, files := tlsCluster(t, "replica-1")
	m := material(t, files["replica-1"])
	n := NewNode("replica-1", zap.NewNop())
	n.SetTLS(m)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(&nodeCollector{n: n})
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	st := m.Status()
	want := map[string]float64{
		"spoolfs_tls_cert_expiry_timestamp_seconds": float64(st.NotAfter.Unix()),
		"spoolfs_tls_reloads_total/ok":              float64(st.Reloads),
		"spoolfs_tls_reloads_total/failed":          float64(st.Failures),
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "/" + l.GetValue()
			}
			got[key] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if time.Until(st.NotAfter) <= 0 {
		t.Errorf("expiry %v is not in the future", st.NotAfter)
	}
}
