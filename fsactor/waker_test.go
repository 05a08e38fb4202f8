package fsactor

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jacobsa/fuse/fuseops"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

func doWithin(t *testing.T, s *Server, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	ran := false
	if err := s.loop.call(ctx, func(machine) { ran = true }); err != nil || !ran {
		t.Fatalf("%s: event ran=%v err=%v", what, ran, err)
	}
}

// TestInlineEvents: the inline actor, idle in poll(2), runs internal events
// posted from many goroutines at once, interleaved with requests.
func TestInlineEvents(t *testing.T) {
	s, fc := startLoop(t, Config{}, newFakeMachine(), &DiscardSink{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				err := s.loop.call(ctx, func(machine) {})
				cancel()
				if err != nil {
					t.Errorf("goroutine %d, event %d: %v", g, i, err)
					return
				}
			}
		}()
	}
	for range 200 {
		if err := fc.reply(t, fc.send(t, &fuseops.GetInodeAttributesOp{Inode: 1})); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

// TestInlineWithdrawnRequest: poll saw a request that the kernel withdrew
// before the read (interrupted while pending). The read answers EAGAIN and
// the actor goes back to poll, where an event still wakes it: it never
// sleeps in read(2), deaf to its mailbox.
func TestInlineWithdrawnRequest(t *testing.T) {
	s, fc := startLoop(t, Config{}, newFakeMachine(), &DiscardSink{})
	withdrawn := make(chan struct{})
	withdraw := func() {
		fc.take() // the kernel takes the request back
		fc.pop()
		close(withdrawn)
	}
	fc.beforeRead.Store(&withdraw)
	fc.send(t, &fuseops.GetInodeAttributesOp{Inode: 1})
	select {
	case <-withdrawn:
	case <-time.After(deadline):
		t.Fatal("the actor did not read the device")
	}
	doWithin(t, s, "after a withdrawn request")
	// The actor drains its mailbox (our Do) before it counts the empty
	// read: wait for the count, bounded.
	testsupport.WaitFor(t, deadline, "one empty read counted", func() bool { return s.loop.stats.emptyReads.Load() == 1 })
	if err := fc.reply(t, fc.send(t, &fuseops.GetInodeAttributesOp{Inode: 1})); err != nil {
		t.Fatal(err)
	}
}

// TestInlineTaskDone: a task's end (evTaskDone) reaches the idle inline
// actor, and ServeOps returns after the device closed only once the task
// has replied.
func TestInlineTaskDone(t *testing.T) {
	m := newFakeMachine()
	m.flushLSN = 3
	sink := newBlockSink()
	s, fc := startLoop(t, Config{}, m, sink)
	id := fc.send(t, &fuseops.FlushFileOp{Inode: 2})
	sink.awaitWait(t)
	sink.releaseWith(nil)
	if err := fc.reply(t, id); err != nil {
		t.Fatal(err)
	}
	// The task posts evTaskDone after its reply: an event the test posts
	// may go before it, so ask until the count drops, within the deadline.
	testsupport.WaitForErr(t, deadline, "evTaskDone taken", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		var tasks int
		if err := s.loop.call(ctx, func(machine) { tasks = s.loop.tasks }); err != nil {
			return err
		}
		if tasks != 0 {
			return fmt.Errorf("%d tasks after the reply and an event, want 0 (evTaskDone not taken)", tasks)
		}
		return nil
	})
}

// observed returns a logger that records Error lines.
func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.ErrorLevel)
	return zap.New(core), logs
}

// waitStalls waits until the watchdog counted n stalls.
func waitStalls(t *testing.T, s *Server, n uint64) {
	t.Helper()
	testsupport.WaitForErr(t, deadline, fmt.Sprintf("%d watchdog stalls", n), func() error {
		if got := s.WatchdogStalls(); got < n {
			return fmt.Errorf("watchdog counted %d stalls", got)
		}
		return nil
	})
}

// awaitLooks waits until the watchdog has looked at the actor n more times
// than when called. The watchdog looks every bound/4, and at most one tick
// waits for it: 6 more looks include one at least a bound after the call.
func awaitLooks(t *testing.T, s *Server, n uint64) {
	t.Helper()
	from := s.loop.dog.looks.Load()
	testsupport.WaitFor(t, deadline, fmt.Sprintf("%d more looks of the watchdog", n), func() bool {
		return s.loop.dog.looks.Load() >= from+n
	})
}

// TestWatchdogStuckOp: a FUSE op stuck in its step beyond the bound is
// reported once, with the stacks of all goroutines (the stuck one
// included), and counted.
func TestWatchdogStuckOp(t *testing.T) {
	m := newFakeMachine()
	m.hold = make(chan struct{})
	log, logs := observed()
	const bound = 50 * time.Millisecond
	s, fc := startLoop(t, Config{Watchdog: bound, Log: log}, m, &DiscardSink{})
	id := fc.send(t, &fuseops.MkDirOp{Parent: 1, Name: "hold"})
	waitStalls(t, s, 1)
	// The same stall is not reported again, however long it lasts: looks
	// after the report, counted, not a sleep.
	awaitLooks(t, s, 8)
	close(m.hold)
	if err := fc.reply(t, id); err != nil {
		t.Fatal(err)
	}
	if n := s.WatchdogStalls(); n != 1 {
		t.Fatalf("one stall counted %d times", n)
	}
	entries := logs.FilterMessageSnippet("watchdog").All()
	if len(entries) != 1 {
		t.Fatalf("%d watchdog lines, want 1", len(entries))
	}
	stacks, _ := entries[0].ContextMap()["goroutines"].(string)
	if !strings.Contains(stacks, "fakeMachine).handleKind") {
		t.Fatalf("the stacks do not show the stuck step:\n%s", stacks)
	}
}

// TestWatchdogStuckEvent: an internal event that runs long is a stall only
// while the kernel has a request waiting.
func TestWatchdogStuckEvent(t *testing.T) {
	log, _ := observed()
	const bound = 50 * time.Millisecond
	s, fc := startLoop(t, Config{Watchdog: bound, Log: log}, newFakeMachine(), &DiscardSink{})
	release := make(chan struct{})
	entered := make(chan struct{})
	go s.loop.call(context.Background(), func(machine) { close(entered); <-release })
	<-entered
	awaitLooks(t, s, 8) // some past the bound, with no request waiting
	if n := s.WatchdogStalls(); n != 0 {
		t.Fatalf("%d stalls with no request waiting, want 0", n)
	}
	id := fc.send(t, &fuseops.GetInodeAttributesOp{Inode: 1})
	waitStalls(t, s, 1)
	close(release)
	if err := fc.reply(t, id); err != nil {
		t.Fatal(err)
	}
}

// benchDev is the fake kernel of BenchmarkLoopInline: a pipe as the
// device, one request in flight, nothing allocated per op, so allocs/op
// counts the inline loop's own (poll, read, step, reply).
type benchDev struct {
	r, w int
	ctx  context.Context
	op   any
	rep  chan struct{}
}

func (c *benchDev) ReadOp() (context.Context, any, error) {
	var b [1]byte
	n, err := unix.Read(c.r, b[:])
	switch {
	case err != nil:
		return nil, nil, &os.PathError{Op: "read", Path: "/dev/fuse", Err: err}
	case n == 0:
		return nil, nil, io.EOF
	}
	return c.ctx, c.op, nil
}

func (c *benchDev) Fd() int { return c.r }

func (c *benchDev) Reply(context.Context, error) error {
	c.rep <- struct{}{}
	return nil
}

// BenchmarkLoopInline: one getattr round trip through the actor woken by
// poll(2) on a device (a pipe here): the one loop without the kernel.
func BenchmarkLoopInline(b *testing.B) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		b.Fatal(err)
	}
	defer unix.Close(p[0])
	s := mustServer(b, Config{Log: zap.NewNop()}.withDefaults(), benchMachine(b), &DiscardSink{})
	s.loop.notify = newNotifyPool(nil, 1, 16, zap.NewNop())
	c := &benchDev{r: p[0], w: p[1], ctx: context.Background(), op: &fuseops.GetInodeAttributesOp{Inode: 1},
		rep: make(chan struct{})}
	go s.loop.run(c)
	one := []byte{1}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		unix.Write(c.w, one)
		<-c.rep
	}
	b.StopTimer()
	unix.Close(c.w)
	<-s.Done()
}
