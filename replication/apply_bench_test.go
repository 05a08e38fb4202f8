package replication

import (
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkApplyBigBatch: one batch of 2,048 new files, each a create and a
// data record of 1 KiB, applied to a view (what a replica does with a
// batch of resent records); the content of each file lists its chunks.
//
//	go test ./replication -run '^$' -bench ApplyBigBatch
func BenchmarkApplyBigBatch(b *testing.B) {
	st := installBase(b, filepath.Join(b.TempDir(), "v.db"))
	defer st.close()
	data := make([]byte, 1024)
	for i := range data {
		data[i] = 'm'
	}
	var recs []*Record
	for i := range uint64(2048) {
		ino := 10 + i
		recs = append(recs, createRec(1, 2*i+1, ino, 1, fmt.Sprintf("m%05d", i)),
			&Record{Term: 1, LSN: 2*i + 2, Op: OpData, Ino: ino, Attr: fileAttr(len(data)), Data: data})
	}
	for b.Loop() {
		v, done := st.view()
		m := st.meta
		ap := &applier{v: v, lim: Limits{}.withDefaults(), meta: &m}
		for _, r := range recs {
			if err := ap.apply(r); err != nil {
				b.Fatal(err)
			}
		}
		done()
	}
}
