package fsactor

import (
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/jacobsa/fuse/fuseops"
)

// TestOpTableRows: every kind has a row with a distinct name, a context
// getter and a handler; every row but the unknown one names its op type,
// and classify of a new op of that type finds the row again. A row for an
// op that creates inodes is one of the four that do.
func TestOpTableRows(t *testing.T) {
	names := map[string]opKind{}
	for k := range numKinds {
		r := opTable[k]
		if r.name == "" || r.ctx == nil || r.handle == nil || r.target == nil {
			t.Errorf("kind %d: row %+v lacks a name, context getter, handler or target", k, r)
			continue
		}
		if prev, dup := names[r.name]; dup {
			t.Errorf("kinds %d and %d are both named %q", prev, k, r.name)
		}
		names[r.name] = k
		if k == kindUnknown {
			if r.typ != nil {
				t.Errorf("the unknown row has type %v", r.typ)
			}
			continue
		}
		if r.typ == nil || r.typ.Kind() != reflect.Pointer {
			t.Errorf("%s: op type %v, want a pointer to a fuseops struct", r.name, r.typ)
			continue
		}
		op := reflect.New(r.typ.Elem()).Interface()
		got, oc := classify(op)
		if got != k {
			t.Errorf("classify(%v) = %s, want %s", r.typ, got, r.name)
		}
		if (oc == nil) != (k == kindStatFS) {
			t.Errorf("%s: OpContext %v; only statfs has none", r.name, oc)
		}
	}
	creates := map[opKind]bool{kindMkDir: true, kindMkNode: true, kindCreate: true, kindSymlink: true}
	for k := range numKinds {
		if opTable[k].creates != creates[k] {
			t.Errorf("%s: creates = %v", k, opTable[k].creates)
		}
		if (opTable[k].created != nil) != creates[k] {
			t.Errorf("%s: has created = %v, want it on the ops that create", k, opTable[k].created != nil)
		}
	}
}

// TestOpTableUnknownAndMismatch: an op of no row is unknown and answers
// ENOSYS; a row given an op of another type answers ENOSYS and logs no
// target instead of panicking the actor.
func TestOpTableUnknownAndMismatch(t *testing.T) {
	type someNewOp struct{ Inode fuseops.InodeID }
	if k, oc := classify(&someNewOp{Inode: 1}); k != kindUnknown || oc != nil {
		t.Fatalf("classify(someNewOp) = %s, %v", k, oc)
	}
	h := newHarness(t, Config{})
	lookup := &fuseops.LookUpInodeOp{Parent: 1, Name: "x"}
	if _, e := opTable[kindCreate].handle(h.st, lookup, Caller{}, time.Now()); e != syscall.ENOSYS {
		t.Fatalf("create row on a lookup op: %v, want ENOSYS", e)
	}
	if ino, name, to := opTable[kindCreate].target(lookup); ino != 0 || name != "" || to != "" {
		t.Fatalf("create row's target of a lookup op: %d %q %q", ino, name, to)
	}
	if ino, name, _ := opTarget(lookup); ino != 1 || name != "x" {
		t.Fatalf("opTarget of a lookup op: %d %q, want 1 x", ino, name)
	}
	if n := failedWaitNotes(kindUnlink, lookup); len(n) != 1 || n[0].Name != "" {
		t.Fatalf("unlink row's notes for a lookup op: %+v", n)
	}
}

// TestFailedWaitNotes: what each kind invalidates after a failed wait.
func TestFailedWaitNotes(t *testing.T) {
	entry := func(p uint64, name string) Note { return Note{Kind: NoteInvalEntry, Parent: p, Name: name} }
	for _, tc := range []struct {
		op   any
		want []Note
	}{
		{&fuseops.RenameOp{OldParent: 1, OldName: "a", NewParent: 2, NewName: "b"}, []Note{entry(1, "a"), entry(2, "b")}},
		{&fuseops.CreateLinkOp{Parent: 3, Name: "l", Target: 9}, []Note{entry(3, "l"), {Kind: NoteInvalInode, Child: 9, Off: -1}}},
		{&fuseops.UnlinkOp{Parent: 1, Name: "u"}, []Note{entry(1, "u")}},
		{&fuseops.RmDirOp{Parent: 1, Name: "r"}, []Note{entry(1, "r")}},
		{&fuseops.MkDirOp{Parent: 1, Name: "d"}, []Note{entry(1, "d")}},
		{&fuseops.MkNodeOp{Parent: 1, Name: "n"}, []Note{entry(1, "n")}},
		{&fuseops.CreateSymlinkOp{Parent: 1, Name: "s"}, []Note{entry(1, "s")}},
		{&fuseops.CreateFileOp{Parent: 1, Name: "c"}, []Note{entry(1, "c")}},
		{&fuseops.SetInodeAttributesOp{Inode: 5}, []Note{{Kind: NoteInvalInode, Child: 5, Len: -1}}},
		{&fuseops.FlushFileOp{Inode: 5}, nil},
		{&fuseops.WriteFileOp{Inode: 5}, nil},
	} {
		k, _ := classify(tc.op)
		if got := failedWaitNotes(k, tc.op); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, want %+v", k, got, tc.want)
		}
	}
}

// kindOfMap is the alternative to kindOf's type switch that was measured
// against it (BenchmarkClassify): a map from the op's dynamic type, built
// from opTable, so that a new op would need its row alone.
var kindByType = func() map[reflect.Type]opKind {
	m := make(map[reflect.Type]opKind, numKinds)
	for k := range numKinds {
		if t := opTable[k].typ; t != nil {
			m[t] = k
		}
	}
	return m
}()

func kindOfMap(op any) opKind { return kindByType[reflect.TypeOf(op)] }

// BenchmarkClassify: finding an op's row, by the map of kindOf and by a
// type switch, over a mix of every kind.
func BenchmarkClassify(b *testing.B) {
	var ops []any
	for k := kindLookUp; k < numKinds; k++ {
		ops = append(ops, reflect.New(opTable[k].typ.Elem()).Interface())
	}
	for _, bc := range []struct {
		name string
		f    func(any) opKind
	}{{"map", kindOfMap}, {"switch", kindOf}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var sum int
			for i := 0; b.Loop(); i++ {
				sum += int(bc.f(ops[i%len(ops)]))
			}
			if sum == 0 {
				b.Fatal("no kind found")
			}
		})
	}
}
