package fsactor

import (
	"context"
	"os"
	"testing"

	"github.com/jacobsa/fuse/fuseops"
	"go.uber.org/zap/zaptest"
)

func TestParseFsGid(t *testing.T) {
	status := "Name:\tsh\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t65534\t65534\t65534\t65534\n" +
		"Gid:\t65533\t65533\t65533\t65530\nFDSize:\t64\n"
	gid, err := parseFsGid([]byte(status))
	if err != nil || gid != 65530 {
		t.Fatalf("parseFsGid = %d, %v; want the fs gid 65530", gid, err)
	}
	if _, err := parseFsGid([]byte("Name:\tx\n")); err == nil {
		t.Fatal("parseFsGid without a Gid line: no error")
	}
}

func TestProcFsGidSelf(t *testing.T) {
	gid, err := procFsGid(uint32(os.Getpid()))
	if err != nil || gid != uint32(os.Getegid()) {
		t.Fatalf("procFsGid(self) = %d, %v; want %d", gid, err, os.Getegid())
	}
}

// TestGidFallback: a ctx that is not jacobsa's (no in-header) falls back to
// /proc/<pid>/status; an unknown pid gives the overflow gid.
func TestGidFallback(t *testing.T) {
	g := &gidSource{log: zaptest.NewLogger(t)}
	oc := &fuseops.OpContext{Uid: uint32(os.Getuid()), Pid: uint32(os.Getpid())}
	if gid := g.gid(context.Background(), oc); gid != uint32(os.Getegid()) {
		t.Fatalf("gid = %d, want %d", gid, os.Getegid())
	}
	if g.fast.Load() != 0 || g.slow.Load() != 1 {
		t.Fatalf("fast %d slow %d, want the slow path once", g.fast.Load(), g.slow.Load())
	}
	if gid := g.gid(context.Background(), &fuseops.OpContext{Pid: 0}); gid != overflowGid {
		t.Fatalf("gid of an unknown caller = %d, want %d", gid, overflowGid)
	}
}
