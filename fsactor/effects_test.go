package fsactor

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/jacobsa/fuse/fuseops"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// TestHandleEffects: a State with no sink at all puts the records and
// notes of each step in its Effects, in order, and nothing else happens:
// a CREATE, a WRITE and its FLUSH, a rename, then a remote removal (the
// internal event that makes notes).
func TestHandleEffects(t *testing.T) {
	st, err := NewState(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, now := Caller{Uid: 1000, Gid: 1000, Pid: 1}, t0
	step := func(op any) Effects {
		t.Helper()
		eff := st.Handle(op, c, now)
		st.CheckInvariants() // the records not applied yet end at the head
		got := Effects{Records: slices.Clone(eff.Records), Notes: slices.Clone(eff.Notes), Err: eff.Err, WaitLSN: eff.WaitLSN}
		eff.Reset()
		if !eff.Empty() {
			t.Fatalf("Reset left %+v", eff)
		}
		return got
	}
	create := &fuseops.CreateFileOp{Parent: rootIno, Name: "msg.tmp", Mode: 0o600, OpenFlags: syscall.O_RDWR}
	e := step(create)
	if e.Err != 0 || e.WaitLSN != 0 || len(e.Notes) != 0 || len(e.Records) != 1 ||
		e.Records[0].Op != RecCreate || e.Records[0].LSN != 1 || e.Records[0].Name != "msg.tmp" {
		t.Fatalf("create: %s", show(e))
	}
	ino, fh := create.Entry.Child, create.Handle
	if e := step(&fuseops.WriteFileOp{Inode: ino, Handle: fh, Data: []byte("hello")}); !e.Empty() {
		t.Fatalf("write: %s", show(e))
	}
	e = step(&fuseops.FlushFileOp{Inode: ino, Handle: fh})
	if len(e.Records) == 1 {
		readContent(t, e.Records[0]) // the content travels as a view, read off the actor
	}
	if e.Err != 0 || e.WaitLSN != 2 || len(e.Records) != 1 || e.Records[0].Op != RecData ||
		e.Records[0].LSN != 2 || string(e.Records[0].Data) != "hello" || len(e.Notes) != 0 {
		t.Fatalf("flush: %s", show(e))
	}
	e = step(&fuseops.RenameOp{OldParent: rootIno, OldName: "msg.tmp", NewParent: rootIno, NewName: "msg"})
	if e.Err != 0 || e.WaitLSN != 3 || len(e.Records) != 1 || e.Records[0].Op != RecRename ||
		e.Records[0].LSN != 3 || len(e.Notes) != 0 {
		t.Fatalf("rename: %s", show(e))
	}
	if e := step(&fuseops.UnlinkOp{Parent: rootIno, Name: "nope"}); e.Err != syscall.ENOENT || e.WaitLSN != 0 || len(e.Records) != 0 {
		t.Fatalf("failed unlink: %s", show(e))
	}
	// An internal event fills the same buffer, read through Effects.
	if err := st.RemoveName(rootIno, "msg", now); err != nil {
		t.Fatal(err)
	}
	eff := st.Effects()
	want := []Note{{Kind: NoteDelete, Parent: rootIno, Child: uint64(ino), Name: "msg"}, {Kind: NoteInvalInode, Child: rootIno, Len: -1}}
	if len(eff.Records) != 1 || eff.Records[0].Op != RecUnlink || eff.Records[0].LSN != 4 || !slices.Equal(eff.Notes, want) {
		t.Fatalf("RemoveName: %s", show(*eff))
	}
	eff.Reset()
}

// TestEffectsAccumulateUntilReset: steps not applied in between keep
// their records and notes in LSN order; only Err and WaitLSN are the last
// step's.
func TestEffectsAccumulateUntilReset(t *testing.T) {
	st, err := NewState(Config{DiscardContent: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	create := &fuseops.CreateFileOp{Parent: rootIno, Name: "f", Mode: 0o600}
	st.Handle(create, Caller{}, t0)
	st.Handle(&fuseops.WriteFileOp{Inode: create.Entry.Child, Handle: create.Handle, Data: []byte("x")}, Caller{}, t0)
	eff := st.Handle(&fuseops.FlushFileOp{Inode: create.Entry.Child, Handle: create.Handle}, Caller{}, t0)
	st.CheckInvariants()
	if len(eff.Records) != 2 || eff.Records[0].LSN != 1 || eff.Records[1].LSN != 2 || eff.WaitLSN != 2 {
		t.Fatalf("%s", show(*eff))
	}
	// Config.DiscardContent: the data record carries the attributes only.
	if r := eff.Records[1]; r.Op != RecData || r.Data != nil || r.Attr.Size != 1 {
		t.Fatalf("data record with DiscardContent: %+v", r)
	}
	eff.Reset()
}

func show(e Effects) string {
	s := fmt.Sprintf("err=%v wait=%d notes=%+v records=", e.Err, e.WaitLSN, e.Notes)
	for _, r := range e.Records {
		s += fmt.Sprintf("[%d %s %q]", r.LSN, r.Op, r.Name)
	}
	return s
}

// orderLog records what the loop does with a step's effects, in order.
type orderLog struct {
	mu  sync.Mutex
	got []string
}

func (o *orderLog) add(format string, args ...any) {
	o.mu.Lock()
	o.got = append(o.got, fmt.Sprintf(format, args...))
	o.mu.Unlock()
}

func (o *orderLog) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	g := o.got
	o.got = nil
	return g
}

// orderSink logs Append, Durable and Wait. With hold it keeps nothing
// durable (a task must wait); else whatever was appended is durable.
type orderSink struct {
	log  *orderLog
	hold bool
	head uint64 // actor-owned
}

func (s *orderSink) Append(r *Record) { s.head = r.LSN; s.log.add("append %d", r.LSN) }
func (s *orderSink) Durable() uint64 {
	s.log.add("durable?")
	if s.hold {
		return 0
	}
	return s.head
}
func (s *orderSink) Wait(ctx context.Context, lsn uint64) error {
	s.log.add("wait %d", lsn)
	return nil
}

// orderConn logs each reply with the notes queued to the notify pool at
// that moment.
type orderConn struct {
	*fakeConn
	log    *orderLog
	queued func() int
}

func (c *orderConn) Reply(ctx context.Context, err error) error {
	c.log.add("reply err=%v notes=%d", err, c.queued())
	return c.fakeConn.Reply(ctx, err)
}

// TestLoopAppliesEffectsInOrder: the loop appends a step's records to the
// sink before it asks Durable and replies (or starts the waiting task),
// and posts the notes to the notify pool only after the reply.
func TestLoopAppliesEffectsInOrder(t *testing.T) {
	for _, hold := range []bool{false, true} {
		t.Run(fmt.Sprintf("hold=%v", hold), func(t *testing.T) {
			log := &orderLog{}
			m := newFakeMachine()
			m.effects = func(op any, e *Effects) {
				if _, ok := op.(*fuseops.RenameOp); ok {
					e.Records = append(e.Records, &Record{LSN: 1, Op: RecRename}, &Record{LSN: 2, Op: RecData})
					e.Notes = append(e.Notes, Note{Kind: NoteInvalEntry, Parent: 1, Name: "a"})
					e.WaitLSN = 2
				}
			}
			sink := &orderSink{log: log, hold: hold}
			s := mustServer(t, Config{Log: zaptest.NewLogger(t)}.withDefaults(), m, sink)
			// A pool with a queue and no worker: the notes posted stay
			// there, so the reply can count them.
			shard := make(chan queuedNote, 16)
			s.loop.notify = &notifyPool{dev: newFakeDev(nil), shards: []chan queuedNote{shard}, log: zap.NewNop(), obs: nopObserver{}}
			fc := &orderConn{fakeConn: newFakeConn(t), log: log, queued: func() int { return len(shard) }}
			go s.loop.run(fc)
			defer func() { fc.hangUp(); <-s.Done() }()

			if err := fc.do(t, &fuseops.RenameOp{OldParent: 1, OldName: "a", NewParent: 1, NewName: "b"}); err != nil {
				t.Fatal(err)
			}
			want := []string{"append 1", "append 2", "durable?", "reply err=<nil> notes=0"}
			if hold {
				want = []string{"append 1", "append 2", "durable?", "wait 2", "reply err=<nil> notes=1"}
			}
			got := log.take()
			if hold && len(got) == len(want) && got[4] == "reply err=<nil> notes=0" {
				got[4] = want[4] // the task may reply before the actor posts
			}
			if !slices.Equal(got, want) {
				t.Fatalf("order %q, want %q", got, want)
			}
			// The actor posts the note after the reply the test woke on.
			testsupport.WaitFor(t, deadline, "the note posted", func() bool { return len(shard) == 1 })
		})
	}
}

// TestCallAppliesBeforeReturning: an internal event's call returns once its
// effects were applied: Server.RemoveName's record is in the sink when it
// returns, as when the state appended records itself.
func TestCallAppliesBeforeReturning(t *testing.T) {
	sink := &recSink{next: 1}
	s, fc := startState(t, Config{}, sink)
	createFile(t, fc, fuseops.RootInodeID, "remote")
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := s.RemoveName(ctx, uint64(fuseops.RootInodeID), "remote"); err != nil {
		t.Fatal(err)
	}
	if n := len(sink.recs); n == 0 || sink.recs[n-1].Op != RecUnlink || sink.recs[n-1].Name != "remote" || sink.bad != "" {
		t.Fatalf("records in the sink when RemoveName returned: %+v (%s)", sink.recs, sink.bad)
	}
}
