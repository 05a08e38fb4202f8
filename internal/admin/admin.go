package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// HealthTimeout bounds how long a volume's actor has to answer /healthz.
const HealthTimeout = 5 * time.Second

// Admin is a node's admin HTTP endpoint:
//
//	/metrics       Prometheus: FUSE ops and errnos, replication lag and
//	               lsns, durability waits, replica stores, Go runtime
//	/healthz       200 when every volume's actor steps (answers an empty
//	               event within 5s): no request to the mount, which this
//	               process serves itself
//	/readyz        200 when every volume's primary holds its term and W
//	               replicas answered within its ready bound, every
//	               follower is connected and lags less than its bound, and
//	               every replica server's store is open and writable; 503
//	               otherwise; the JSON body says why (Readiness)
//	/status        the node's status as JSON (what `spoolfs status` prints)
//	/promote       POST ?volume=V: promote the follower of V to primary
//	               (`spoolfs promote`; promote.go)
//	/debug/pprof/  the Go profiler
//
// What each answers comes from a Source (node.Node): the endpoint only
// serves it.
type Admin struct {
	srv  *http.Server
	lis  net.Listener
	log  *zap.Logger
	done chan struct{}
}

// Source is what the endpoint reports, read when asked.
type Source interface {
	// Status is the node's status (/status).
	Status(ctx context.Context) NodeStatus
	// Unhealthy says what does not step within ctx (/healthz: ctx ends
	// after HealthTimeout); nothing when all is well. It must make no
	// request to a mount this process serves.
	Unhealthy(ctx context.Context) []string
	// Readiness says whether each part of the node is ready and why not
	// (/readyz); Start sets Ready from the parts.
	Readiness() Readiness
	// Promote makes this node the primary of volume, which it follows
	// (/promote): it returns once the volume is read-write. Errors wrap
	// ErrNoSuchVolume or ErrNotFollower when they are the reason.
	Promote(ctx context.Context, volume string) (PromoteResult, error)
}

// Start serves the admin endpoint of src on addr (port 0: a free one;
// Addr says which); metrics is the node's own Prometheus collector,
// registered with Go's and the process's.
func Start(addr string, src Source, metrics prometheus.Collector, log *zap.Logger) (*Admin, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		metrics)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), HealthTimeout)
		defer cancel()
		answer(w, src.Unhealthy(ctx))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) { answerReady(w, src.Readiness()) })
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(src.Status(r.Context()))
	})
	mux.HandleFunc("/promote", servePromote(src))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	a := &Admin{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, lis: lis, log: log, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		if err := a.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin endpoint stopped", zap.Error(err))
		}
	}()
	log.Info("admin endpoint serving", zap.String("addr", a.Addr()),
		zap.String("try", "curl -s http://"+a.Addr()+"/metrics | grep ^spoolfs_"))
	return a, nil
}

// Addr is the address the endpoint listens on.
func (a *Admin) Addr() string { return a.lis.Addr().String() }

// Stop shuts the endpoint down (requests in flight get 2 seconds).
func (a *Admin) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		_ = a.srv.Close()
	}
	<-a.done
}

// answer writes 200 "ok", or 503 with one line per problem.
func answer(w http.ResponseWriter, bad []string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(bad) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, strings.Join(bad, "\n"))
		return
	}
	fmt.Fprintln(w, "ok")
}
