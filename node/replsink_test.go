package node

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/spoolfs/spoolfs/fsactor"
	"github.com/spoolfs/spoolfs/replication"
)

var _ fsactor.Sink = (*replSink)(nil)

func TestRecordOpsMatch(t *testing.T) {
	for op := fsactor.RecCreate; op <= fsactor.RecData; op++ {
		if got, want := replication.Op(op).String(), op.String(); got != want {
			t.Errorf("op %d: replication says %q, fsactor %q", op, got, want)
		}
	}
}

func TestRecordToRepl(t *testing.T) {
	r := &fsactor.Record{LSN: 7, Op: fsactor.RecRename, Ino: 5, Parent: 1, Name: "a", NewParent: 2, NewName: "b",
		Replaced: 9, Attr: fsactor.Attr{Mode: 0o100644, Uid: 1, Gid: 2, Nlink: 3, Rdev: 4, Size: 5, Atime: 6, Mtime: 7, Ctime: 8},
		Target: "t", XattrName: "user.x", Data: []byte("d")}
	got := recordToRepl(r)
	want := &replication.Record{LSN: 7, Op: replication.OpRename, Ino: 5, Parent: 1, Name: "a", NewParent: 2, NewName: "b",
		Replaced: 9, Attr: replication.Attr{Mode: 0o100644, Uid: 1, Gid: 2, Nlink: 3, Rdev: 4, Size: 5, Atime: 6, Mtime: 7, Ctime: 8},
		Target: "t", XattrName: "user.x", Data: []byte("d")}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	// Every field of fsactor.Record is carried (the term is stamped later).
	if n, m := reflect.TypeOf(fsactor.Record{}).NumField(), reflect.TypeOf(replication.Record{}).NumField(); m != n+1 {
		t.Fatalf("fsactor.Record has %d fields, replication.Record %d: update recordToRepl", n, m)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := &fsactor.Snapshot{LSN: 12, NextIno: 9, Inodes: []fsactor.SnapInode{
		{Ino: 1, Attr: fsactor.Attr{Mode: 0o40755, Nlink: 2}, Entries: []fsactor.SnapDirent{{Name: "f", Ino: 3}}},
		{Ino: 3, Attr: fsactor.Attr{Mode: 0o100600, Nlink: 1, Size: 10}, Data: []byte("abc"),
			Xattrs: map[string][]byte{"user.k": []byte("v")}},
	}}
	if got := SnapshotToActor(SnapshotToRepl(s)); !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip changed the snapshot:\n%+v\n%+v", got, s)
	}
}

func TestSinkErrors(t *testing.T) {
	cases := []struct {
		in   error
		want error
	}{
		{fmt.Errorf("x: %w", replication.ErrFenced), fsactor.ErrFenced},
		{fmt.Errorf("x: %w (%w)", replication.ErrNoQuorum, context.DeadlineExceeded), fsactor.ErrNotDurable},
		{replication.ErrClosed, fsactor.ErrNotDurable},
	}
	for _, c := range cases {
		got := sinkError(c.in)
		if !errors.Is(got, c.want) || !errors.Is(got, c.in) {
			t.Errorf("%v → %v, want it to wrap %v and the cause", c.in, got, c.want)
		}
	}
	if sinkError(nil) != nil {
		t.Error("nil error mapped to an error")
	}
}
