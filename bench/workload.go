package bench

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Workload names one of the benchmark's operations.
type Workload string

// The workloads. One iteration of each is one "op" in the figures.
const (
	// Meta creates an empty file, stats it and unlinks it.
	Meta Workload = "meta"
	// Write4K creates a file, writes 4 KiB to it and closes it. The files
	// stay until the end of the run.
	Write4K Workload = "write4k"
	// Spool is one exim message (BENCHMARKS.md): create -D, write 16 KiB in
	// 4 KiB writes, fsync, close; create -H.tmp, write 1 KiB, fsync, close,
	// rename to -H; read both; unlink both.
	Spool Workload = "spool"
)

// Workloads lists every workload, in report order.
var Workloads = []Workload{Meta, Write4K, Spool}

// ParseWorkload returns the workload called name.
func ParseWorkload(name string) (Workload, error) {
	for _, w := range Workloads {
		if string(w) == name {
			return w, nil
		}
	}
	return "", fmt.Errorf("unknown workload %q (want one of %s)", name, workloadNames())
}

func workloadNames() string {
	names := make([]string, len(Workloads))
	for i, w := range Workloads {
		names[i] = string(w)
	}
	return strings.Join(names, ", ")
}

const (
	createFlags = unix.O_CREAT | unix.O_EXCL | unix.O_WRONLY | unix.O_CLOEXEC
	createMode  = 0o600
)

// Steps are the latencies of the system calls a mail server waits on for
// durability, as the workloads make them: fsync and the close after it
// (spool), close (write4k), and the rename that publishes a message.
type Steps struct {
	Fsync, Close, Rename Hist
}

// Merge adds o's latencies to s.
func (s *Steps) Merge(o *Steps) {
	s.Fsync.Merge(&o.Fsync)
	s.Close.Merge(&o.Close)
	s.Rename.Merge(&o.Rename)
}

// client is the state of one benchmark client: its own directory, a name
// counter and its buffers, so that an iteration allocates little.
type client struct {
	dir    string // absolute path of the client's directory, with a trailing /
	prefix string // unique per run, so runs never collide on names
	seq    uint64
	data   []byte         // 16 KiB written by the workloads
	rbuf   []byte         // read buffer
	name   []byte         // scratch for building paths
	step   string         // the syscall of the current iteration, for errors
	steps  *Steps         // where fsync, close and rename latencies go
	done   *atomic.Uint64 // iterations of all clients of the run (the sampler's)
}

func newClient(dir, prefix string) *client {
	data := make([]byte, 16<<10)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	return &client{
		dir:    strings.TrimSuffix(dir, "/") + "/",
		prefix: prefix,
		data:   data,
		rbuf:   make([]byte, 64<<10),
		name:   make([]byte, 0, 256),
		steps:  &Steps{},
	}
}

// path returns dir/prefix-seq suffix.
func (c *client) path(seq uint64, suffix string) string {
	b := append(c.name[:0], c.dir...)
	b = append(b, c.prefix...)
	b = append(b, '-')
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, suffix...)
	return string(b)
}

// iterate runs one iteration of w.
func (c *client) iterate(w Workload) error {
	c.seq++
	switch w {
	case Meta:
		return c.meta()
	case Write4K:
		return c.write4k()
	case Spool:
		return c.spool()
	}
	return fmt.Errorf("unknown workload %q", w)
}

func (c *client) fail(p string, err error) error {
	return fmt.Errorf("%s %s: %w", c.step, p, err)
}

func (c *client) meta() error {
	p := c.path(c.seq, "")
	c.step = "create"
	fd, err := unix.Open(p, createFlags, createMode)
	if err != nil {
		return c.fail(p, err)
	}
	c.step = "close"
	if err := unix.Close(fd); err != nil {
		return c.fail(p, err)
	}
	var st unix.Stat_t
	c.step = "stat"
	if err := unix.Stat(p, &st); err != nil {
		return c.fail(p, err)
	}
	c.step = "unlink"
	if err := unix.Unlink(p); err != nil {
		return c.fail(p, err)
	}
	return nil
}

func (c *client) write4k() error {
	return c.writeFile(c.path(c.seq, ""), 4<<10, 4<<10, false)
}

// writeFile creates p and writes size bytes to it in chunk-sized writes,
// then fsyncs it if asked and closes it.
func (c *client) writeFile(p string, size, chunk int, fsync bool) error {
	c.step = "create"
	fd, err := unix.Open(p, createFlags, createMode)
	if err != nil {
		return c.fail(p, err)
	}
	c.step = "write"
	for off := 0; off < size; off += chunk {
		n, err := unix.Write(fd, c.data[off:off+chunk])
		if err == nil && n != chunk {
			err = fmt.Errorf("short write: %d of %d bytes", n, chunk)
		}
		if err != nil {
			unix.Close(fd)
			return c.fail(p, err)
		}
	}
	if fsync {
		c.step = "fsync"
		t := time.Now()
		if err := unix.Fsync(fd); err != nil {
			unix.Close(fd)
			return c.fail(p, err)
		}
		c.steps.Fsync.Record(time.Since(t))
	}
	c.step = "close"
	t := time.Now()
	if err := unix.Close(fd); err != nil {
		return c.fail(p, err)
	}
	c.steps.Close.Record(time.Since(t))
	return nil
}

// readFile reads p to its end and checks it holds want bytes.
func (c *client) readFile(p string, want int) error {
	c.step = "open"
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return c.fail(p, err)
	}
	c.step = "read"
	total := 0
	for {
		n, err := unix.Read(fd, c.rbuf)
		if err != nil {
			unix.Close(fd)
			return c.fail(p, err)
		}
		if n == 0 {
			break
		}
		total += n
	}
	c.step = "close"
	if err := unix.Close(fd); err != nil {
		return c.fail(p, err)
	}
	if total != want {
		return fmt.Errorf("read %s: %d bytes, want %d", p, total, want)
	}
	return nil
}

func (c *client) spool() error {
	d := c.path(c.seq, "-D")
	htmp := c.path(c.seq, "-H.tmp")
	h := c.path(c.seq, "-H")
	if err := c.writeFile(d, 16<<10, 4<<10, true); err != nil {
		return err
	}
	if err := c.writeFile(htmp, 1<<10, 1<<10, true); err != nil {
		return err
	}
	c.step = "rename"
	t := time.Now()
	if err := unix.Rename(htmp, h); err != nil {
		return c.fail(htmp, err)
	}
	c.steps.Rename.Record(time.Since(t))
	if err := c.readFile(h, 1<<10); err != nil {
		return err
	}
	if err := c.readFile(d, 16<<10); err != nil {
		return err
	}
	c.step = "unlink"
	if err := unix.Unlink(h); err != nil {
		return c.fail(h, err)
	}
	if err := unix.Unlink(d); err != nil {
		return c.fail(d, err)
	}
	return nil
}
