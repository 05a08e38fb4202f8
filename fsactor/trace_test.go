package fsactor

import (
	"sync"
	"testing"

	"github.com/jacobsa/fuse/fuseops"
	"github.com/spoolfs/spoolfs/internal/testsupport"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// reqSink is a blockSink that remembers the request id of each record.
type reqSink struct {
	*blockSink
	mu   sync.Mutex
	reqs map[uint64]uint64 // LSN → Record.Req
	ops  map[uint64]RecordOp
}

func (s *reqSink) Append(r *Record) {
	s.mu.Lock()
	s.reqs[r.LSN], s.ops[r.LSN] = r.Req, r.Op
	s.mu.Unlock()
	s.blockSink.Append(r)
}

// TestRequestIDFollowsRecords: the records an op emits carry its request
// id (the access log's req) to the sink; the access log names the inode
// a create made and the one a release closed; the end of a durability
// wait is logged at debug with the op's id and LSN.
func TestRequestIDFollowsRecords(t *testing.T) {
	sink := &reqSink{blockSink: newBlockSink(), reqs: map[uint64]uint64{}, ops: map[uint64]RecordOp{}}
	core, logs := observer.New(zapcore.DebugLevel)
	_, fc := startState(t, Config{Log: zap.New(core), AccessLog: true}, sink)
	ctx := func(id uint64) fuseops.OpContext { return fuseops.OpContext{FuseID: id} }

	create := &fuseops.CreateFileOp{Parent: fuseops.RootInodeID, Name: "m", Mode: 0o644, OpContext: ctx(10)}
	if err := fc.do(t, create); err != nil {
		t.Fatal(err)
	}
	ino, fh := create.Entry.Child, create.Handle
	if err := fc.do(t, &fuseops.WriteFileOp{Inode: ino, Handle: fh, Data: []byte("x"), OpContext: ctx(12)}); err != nil {
		t.Fatal(err)
	}
	id := fc.send(t, &fuseops.FlushFileOp{Inode: ino, Handle: fh, OpContext: ctx(14)})
	dataLSN := sink.awaitWait(t)
	sink.releaseWith(nil)
	if err := fc.reply(t, id); err != nil {
		t.Fatal(err)
	}
	if err := fc.do(t, &fuseops.ReleaseFileHandleOp{Handle: fh, OpContext: ctx(16)}); err != nil {
		t.Fatal(err)
	}

	sink.mu.Lock()
	if sink.ops[1] != RecCreate || sink.reqs[1] != 10 || sink.ops[dataLSN] != RecData || sink.reqs[dataLSN] != 14 {
		t.Errorf("records (lsn → req) %v, ops %v: want the create's record with req 10, the flush's data record (lsn %d) with 14",
			sink.reqs, sink.ops, dataLSN)
	}
	sink.mu.Unlock()
	// A line is written after its reply: wait for the last one.
	lines := map[string]map[string]any{}
	testsupport.WaitFor(t, deadline, "the create, release and wait lines", func() bool {
		for _, e := range logs.All() {
			f := e.ContextMap()
			if e.Message == "fuse op" {
				lines[f["op"].(string)] = f
			} else if e.Message == "durability wait done" {
				lines["wait"] = f
			}
		}
		return lines["create"] != nil && lines["release"] != nil && lines["wait"] != nil
	})
	if f := lines["create"]; f["req"] != uint64(10) || f["ino"] != uint64(1) || f["new_ino"] != uint64(ino) {
		t.Errorf("create line %v: want req 10, ino 1 (the parent), new_ino %d", f, ino)
	}
	if f := lines["release"]; f["req"] != uint64(16) || f["ino"] != uint64(ino) {
		t.Errorf("release line %v: want req 16, ino %d", f, ino)
	}
	if f := lines["wait"]; f["req"] != uint64(14) || f["op"] != "flush" || f["lsn"] != dataLSN {
		t.Errorf("wait line %v: want req 14, op flush, lsn %d", f, dataLSN)
	}
}
