package e2e

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

var (
	flagRangesBig     = flag.Int64("ranges.big", 256<<20, "TestPartialRecordsShipWhatChanged: size of the file appended to")
	flagRangesAppends = flag.Int("ranges.appends", 4, "TestPartialRecordsShipWhatChanged: 1 MiB appends to it")
)

// rangesSlack is what a FLUSH may ship beyond twice the bytes written: a
// page either side of a write (the kernel writes whole pages back) and
// record framing.
const rangesSlack = 64 << 10

// TestPartialRecordsShipWhatChanged (issue 13): on a replicated mount, a
// FLUSH ships the bytes written since the file's last data record, not
// the file. One byte at 2 GiB of a new file, then 1 MiB appends (each
// opened with O_APPEND, written, closed) to a 256 MiB file: for each
// close, the primary's /metrics say it shipped (spoolfs_replication_
// shipped_bytes_total) at most twice the bytes written plus a constant in
// one partial data record, and each replica's received bytes
// (spoolfs_replica_received_bytes_total, its Status) grew by as little.
// Then a new primary recovers the file from the replicas, byte for byte.
// Before partial records every append shipped the whole file again.
func TestPartialRecordsShipWhatChanged(t *testing.T) {
	requireCluster(t)
	c := newCluster(t, 3)
	const vol = "ranges"
	admin := testsupport.FreeAddr(t)
	p := c.startPrimary(vol, "p1", "--admin", admin)
	if err := os.WriteFile(p.path("warm"), []byte("w"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, c, vol)

	// closeCosts runs one change and its close, and checks what it shipped.
	closeCosts := func(what string, written int64, change func(*os.File) error, name string, flags int) {
		t.Helper()
		shipped, records, partial := shippedMetrics(t, admin, vol)
		before := c.usage(t, vol)
		f, err := os.OpenFile(p.path(name), flags, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if err := change(f); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		start := time.Now()
		if err := f.Close(); err != nil {
			t.Fatalf("%s: close: %v", what, err)
		}
		took := time.Since(start)
		if waitConverged(t, c, vol) == 0 {
			t.FailNow()
		}
		shipped2, records2, partial2 := shippedMetrics(t, admin, vol)
		after := c.usage(t, vol)
		bound := 2*written + rangesSlack
		t.Logf("%s: close %v; %d bytes written, %d shipped in %d data records (%d partial); replicas received %d, %d, %d bytes",
			what, took.Round(time.Millisecond), written, shipped2-shipped, records2-records, partial2-partial,
			after[0].received-before[0].received, after[1].received-before[1].received, after[2].received-before[2].received)
		if shipped2-shipped > bound || records2-records != 1 || partial2-partial != 1 {
			t.Errorf("%s: shipped %d bytes in %d data records (%d partial), want one partial record of at most %d",
				what, shipped2-shipped, records2-records, partial2-partial, bound)
		}
		for i := range c.reps {
			if got := int64(after[i].received - before[i].received); got > bound {
				t.Errorf("%s: replica %d received %d bytes, want at most %d", what, i+1, got, bound)
			}
		}
	}

	closeCosts("1 byte at 2 GiB", 1, func(f *os.File) error {
		_, err := f.WriteAt([]byte("x"), 2<<30)
		return err
	}, "sparse", os.O_CREATE|os.O_WRONLY)

	big := *flagRangesBig
	want := sha256.New()
	block := make([]byte, 1<<20)
	fill := func(n int) []byte {
		for i := range block {
			block[i] = byte(1 + (n+i)%251)
		}
		return block
	}
	f, err := os.Create(p.path("big"))
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < big; off += int64(len(block)) {
		b := fill(int(off))
		want.Write(b)
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if waitConverged(t, c, vol) == 0 { // the third replica too, before measuring
		t.FailNow()
	}
	for i := 0; i < *flagRangesAppends; i++ {
		b := fill(int(big) + i<<20)
		want.Write(b)
		closeCosts("1 MiB append to a "+strconv.FormatInt((big>>20)+int64(i), 10)+" MiB file", int64(len(b)), func(f *os.File) error {
			_, err := f.Write(b)
			return err
		}, "big", os.O_WRONLY|os.O_APPEND)
	}
	p.stop(t)

	p2 := c.startPrimary(vol, "p2")
	defer p2.stop(t)
	g, err := os.Open(p2.path("big"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	got := sha256.New()
	n, err := io.Copy(got, g)
	if err != nil || n != big+int64(*flagRangesAppends)<<20 || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("recovered file: %d bytes (%v), content equal %v", n, err, bytes.Equal(got.Sum(nil), want.Sum(nil)))
	}
	one := make([]byte, 1)
	s, err := os.Open(p2.path("sparse"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.ReadAt(one, 2<<30); err != nil || one[0] != 'x' {
		t.Fatalf("recovered byte at 2 GiB: %q %v", one, err)
	}
}

// shippedMetrics reads a primary's data-record counters for vol from its
// /metrics: bytes shipped, data records, partial ones.
func shippedMetrics(t *testing.T, admin, vol string) (bytes, records, partial int64) {
	t.Helper()
	label := `volume="` + vol + `"`
	for _, line := range strings.Split(scrapeMetrics(t, admin), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || !strings.Contains(f[0], label) {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		switch {
		case strings.HasPrefix(f[0], "spoolfs_replication_shipped_bytes_total{"):
			bytes = int64(v)
		case strings.HasPrefix(f[0], "spoolfs_replication_data_records_total{"):
			records += int64(v)
			if strings.Contains(f[0], `kind="partial"`) {
				partial = int64(v)
			}
		}
	}
	return bytes, records, partial
}
