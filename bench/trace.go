package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// CountMethod says in the report how requests were counted.
const CountMethod = "kernel tracepoints fuse:fuse_request_send/fuse_request_end " +
	"(private tracefs instance, filtered on the mount's connection), in a separate untimed pass; " +
	"FORGET/BATCH_FORGET and INTERRUPT bypass these tracepoints and are not counted"

const tracefsRoot = "/sys/kernel/tracing"

// Tracer counts the FUSE requests the kernel sends to one connection, by
// opcode, with the time from send to reply. It owns a private tracefs
// instance, so it neither sees nor disturbs other tracing on the machine.
type Tracer struct {
	dir string // the instance directory
}

// OpenTracer creates a tracefs instance for this process (mounting tracefs
// at /sys/kernel/tracing if it is not mounted; root only).
func OpenTracer() (*Tracer, error) {
	if _, err := os.Stat(filepath.Join(tracefsRoot, "instances")); err != nil {
		if merr := unix.Mount("nodev", tracefsRoot, "tracefs", 0, ""); merr != nil {
			return nil, fmt.Errorf("tracefs is not available at %s (%v) and mounting it failed: %w", tracefsRoot, err, merr)
		}
	}
	if _, err := os.Stat(filepath.Join(tracefsRoot, "events/fuse/fuse_request_send")); err != nil {
		return nil, fmt.Errorf("this kernel has no fuse tracepoints: %w", err)
	}
	removeStaleInstances()
	dir := filepath.Join(tracefsRoot, "instances", fmt.Sprintf("%s%d", tracerPrefix, os.Getpid()))
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("tracefs instance: %w", err)
	}
	t := &Tracer{dir: dir}
	if err := t.write("tracing_on", "0"); err != nil {
		t.Close()
		return nil, err
	}
	if err := t.write("buffer_size_kb", "16384"); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// tracerPrefix names the tracefs instances of bench processes: prefix + pid.
const tracerPrefix = "spoolfs-bench-"

// removeStaleInstances removes the tracefs instances left by bench
// processes that died without closing theirs (their buffers hold memory).
func removeStaleInstances() {
	dirs, _ := filepath.Glob(filepath.Join(tracefsRoot, "instances", tracerPrefix+"*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), tracerPrefix))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		(&Tracer{dir: d}).Close()
	}
}

// Close removes the tracefs instance.
func (t *Tracer) Close() error {
	t.write("tracing_on", "0")
	t.write("events/fuse/enable", "0")
	if err := os.Remove(t.dir); err != nil {
		return fmt.Errorf("remove tracefs instance: %w", err)
	}
	return nil
}

func (t *Tracer) write(name, value string) error {
	if err := os.WriteFile(filepath.Join(t.dir, name), []byte(value+"\n"), 0); err != nil {
		return fmt.Errorf("tracefs %s: %w", name, err)
	}
	return nil
}

// kernelDev encodes a device number as the kernel's dev_t (MKDEV), which is
// what the tracepoints print as "connection".
func kernelDev(major, minor uint32) uint32 { return major<<20 | minor }

// Start clears the buffer and starts recording the requests of the FUSE
// connection mounted as device major:minor.
func (t *Tracer) Start(major, minor uint32) error {
	filter := fmt.Sprintf("connection == %d", kernelDev(major, minor))
	for _, ev := range []string{"fuse_request_send", "fuse_request_end"} {
		if err := t.write("events/fuse/"+ev+"/filter", filter); err != nil {
			return err
		}
	}
	if err := t.write("trace", ""); err != nil { // clears the buffer
		return err
	}
	if err := t.write("events/fuse/enable", "1"); err != nil {
		return err
	}
	return t.write("tracing_on", "1")
}

// Stop stops recording and returns what was recorded since Start.
func (t *Tracer) Stop() (RequestCounts, error) {
	if err := t.write("tracing_on", "0"); err != nil {
		return RequestCounts{}, err
	}
	if err := t.write("events/fuse/enable", "0"); err != nil {
		return RequestCounts{}, err
	}
	if lost := t.overruns(); lost > 0 {
		return RequestCounts{}, fmt.Errorf("trace buffer overran: %d events lost; count fewer iterations", lost)
	}
	f, err := os.Open(filepath.Join(t.dir, "trace"))
	if err != nil {
		return RequestCounts{}, fmt.Errorf("read trace: %w", err)
	}
	defer f.Close()
	return parseTrace(f)
}

// overruns sums the events lost to a full buffer on every CPU.
func (t *Tracer) overruns() uint64 {
	paths, _ := filepath.Glob(filepath.Join(t.dir, "per_cpu/cpu*/stats"))
	var n uint64
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "overrun: "); ok {
				x, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	return n
}

// OpStat is what was recorded for one opcode.
type OpStat struct {
	Count   uint64
	Replied uint64        // requests whose reply was seen
	Wait    time.Duration // total time from send to reply, over the replied ones
}

// RequestCounts is what a Tracer recorded: requests by opcode name.
type RequestCounts struct {
	Ops map[string]*OpStat
}

// Total returns the number of requests of every opcode.
func (c RequestCounts) Total() uint64 {
	var n uint64
	for _, s := range c.Ops {
		n += s.Count
	}
	return n
}

// Names returns the opcode names, most frequent first.
func (c RequestCounts) Names() []string {
	names := make([]string, 0, len(c.Ops))
	for n := range c.Ops {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := c.Ops[names[i]], c.Ops[names[j]]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return names[i] < names[j]
	})
	return names
}

// pending is a request seen sent and not yet replied.
type pending struct {
	op string
	at time.Duration
}

// parseTrace reads tracefs text output such as
//
//	prog-12 [001] ..... 105.000010: fuse_request_send: connection 42 req 8 opcode 1 (FUSE_LOOKUP) len 49
//	prog-12 [000] ..... 105.000052: fuse_request_end: connection 42 req 8 len 144 error -2
func parseTrace(r io.Reader) (RequestCounts, error) {
	c := RequestCounts{Ops: map[string]*OpStat{}}
	inflight := map[uint64]pending{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		ts, ev, fields, ok := splitTraceLine(line)
		if !ok {
			continue
		}
		req, ok := fieldUint(fields, "req")
		if !ok {
			continue
		}
		switch ev {
		case "fuse_request_send":
			name := opcodeName(fields)
			st := c.Ops[name]
			if st == nil {
				st = &OpStat{}
				c.Ops[name] = st
			}
			st.Count++
			inflight[req] = pending{op: name, at: ts}
		case "fuse_request_end":
			if p, ok := inflight[req]; ok {
				delete(inflight, req)
				st := c.Ops[p.op]
				st.Replied++
				st.Wait += ts - p.at
			}
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("read trace: %w", err)
	}
	return c, nil
}

// splitTraceLine returns a line's timestamp, event name and the words after it.
func splitTraceLine(line string) (time.Duration, string, []string, bool) {
	words := strings.Fields(line)
	for i := 1; i+1 < len(words); i++ {
		ev, ok := strings.CutSuffix(words[i], ":")
		if !ok || (ev != "fuse_request_send" && ev != "fuse_request_end") {
			continue
		}
		tsWord := strings.TrimSuffix(words[i-1], ":")
		secs, err := strconv.ParseFloat(tsWord, 64)
		if err != nil {
			return 0, "", nil, false
		}
		return time.Duration(secs * 1e9), ev, words[i+1:], true
	}
	return 0, "", nil, false
}

// fieldUint returns the number after the word key.
func fieldUint(fields []string, key string) (uint64, bool) {
	for i := 0; i+1 < len(fields); i++ {
		if fields[i] == key {
			v, err := strconv.ParseUint(fields[i+1], 10, 64)
			return v, err == nil
		}
	}
	return 0, false
}

// opcodeName returns "LOOKUP" for "... opcode 1 (FUSE_LOOKUP) ...".
func opcodeName(fields []string) string {
	for i := 0; i+2 < len(fields); i++ {
		if fields[i] == "opcode" {
			n := strings.Trim(fields[i+2], "()")
			if n == "" || strings.HasPrefix(n, "0x") || n[0] >= '0' && n[0] <= '9' {
				return "OPCODE_" + fields[i+1]
			}
			return strings.TrimPrefix(n, "FUSE_")
		}
	}
	return "UNKNOWN"
}
