package node

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
//	/readyz        200 when every volume serves and is not fenced
//	/status        the node's status as JSON (what `spoolfs status` prints)
//	/debug/pprof/  the Go profiler
type Admin struct {
	srv  *http.Server
	lis  net.Listener
	log  *zap.Logger
	done chan struct{}
}

// StartAdmin serves n's admin endpoint on addr (port 0: a free one; Addr
// says which).
func StartAdmin(addr string, n *Node, log *zap.Logger) (*Admin, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&nodeCollector{n: n})
	h := &health{n: n}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", h.healthz)
	mux.HandleFunc("/readyz", h.readyz)
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(n.Status(r.Context()))
	})
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

// health answers /healthz and /readyz.
type health struct {
	n *Node
}

// healthz asks each volume's actor to step an empty event (Server.Ping)
// within HealthTimeout. It never touches the mount: a FUSE request from
// the process that serves it is the hazard of docs/failures.md, finding 1
// (a SIGKILL while its own actor holds the request leaves a zombie holding
// /dev/fuse). A stuck actor is also reported by the watchdog, with stacks.
func (h *health) healthz(w http.ResponseWriter, r *http.Request) {
	vols, reps := h.n.parts()
	ctx, cancel := context.WithTimeout(r.Context(), HealthTimeout)
	defer cancel()
	var bad []string
	for _, rv := range vols {
		if err := rv.Server().Ping(ctx); err != nil {
			bad = append(bad, fmt.Sprintf("volume %s at %s: the actor did not step within %v: %v",
				rv.opts.Volume, rv.Dir(), HealthTimeout, err))
		}
	}
	answer(w, append(bad, replicasDown(reps)...))
}

func (h *health) readyz(w http.ResponseWriter, r *http.Request) {
	vols, reps := h.n.parts()
	var bad []string
	if len(vols) == 0 && len(reps) == 0 {
		bad = append(bad, "nothing is served yet")
	}
	for _, rv := range vols {
		select {
		case <-rv.Done():
			bad = append(bad, "volume "+rv.opts.Volume+": not serving")
			continue
		default:
		}
		if rv.primary.Fenced() {
			bad = append(bad, "volume "+rv.opts.Volume+": fenced (another node holds a newer term; mutations answer EROFS)")
		}
	}
	answer(w, append(bad, replicasDown(reps)...))
}

// replicasDown names the replica servers that stopped serving.
func replicasDown(reps []*Replica) []string {
	var down []string
	for _, rep := range reps {
		select {
		case <-rep.Done():
			down = append(down, "replica "+rep.Addr()+": not serving")
		default:
		}
	}
	return down
}

func answer(w http.ResponseWriter, bad []string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(bad) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, strings.Join(bad, "\n"))
		return
	}
	fmt.Fprintln(w, "ok")
}
