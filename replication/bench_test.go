package replication

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkDurableMessage: one spool message as the actor ships it (a
// create and a 16 KiB data record), then a wait until W=2 of 3 replicas
// hold it fsynced, from 1, 8 and 32 writers. Reports messages/s and the
// p50/p99 of the wait.
func BenchmarkDurableMessage(b *testing.B) {
	for _, writers := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) { benchDurable(b, writers) })
	}
}

func benchDurable(b *testing.B, writers int) {
	c := makeCluster(b, 3)
	p, snap, err := OpenPrimary(context.Background(), c.primaryConfig(vol))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	var mu sync.Mutex
	lsn, ino := snap.LSN, snap.NextIno
	body := make([]byte, 16<<10)
	appendMsg := func(w, i int) uint64 {
		mu.Lock()
		defer mu.Unlock()
		ino++
		lsn++
		p.Append(&Record{LSN: lsn, Op: OpCreate, Ino: ino, Parent: RootIno, Name: fmt.Sprintf("m%d-%d", w, i), Attr: fileAttr(0)})
		lsn++
		p.Append(&Record{LSN: lsn, Op: OpData, Ino: ino, Attr: fileAttr(len(body)), Data: body})
		return lsn
	}
	waits := make([][]time.Duration, writers)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < b.N; i += writers {
				l := appendMsg(w, i)
				t0 := time.Now()
				if err := p.Wait(context.Background(), l); err != nil {
					b.Error(err)
					return
				}
				waits[w] = append(waits[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	all := slices.Concat(waits...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(len(all))/time.Since(start).Seconds(), "msgs/s")
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}

// BenchmarkFollowerLag: one spool message (a create and a 4 KiB data
// record) at a time, each waited for (W=2 of 3), and the time from the
// Wait's return to a follower (its fake target) having applied it.
// Reports the p50/p99 of that lag.
func BenchmarkFollowerLag(b *testing.B) {
	c := makeCluster(b, 3)
	p, m := c.openPrimary(c.primaryConfig(vol))
	_, target := c.startFollower(c.followerConfig(vol))
	applied := make(chan uint64, 1<<16)
	target.mu.Lock()
	target.check = func(last *Record, _ *volStore) { applied <- last.LSN }
	target.mu.Unlock()
	body := make([]byte, 4<<10)
	lags := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, lsn := m.writeFile(RootIno, fmt.Sprintf("m%d", i), body)
		mustWait(b, p, lsn, 10*time.Second)
		t0 := time.Now()
		for got := uint64(0); got < lsn; {
			select {
			case got = <-applied:
			case <-time.After(10 * time.Second):
				b.Fatalf("follower never applied lsn %d", lsn)
			}
		}
		lags = append(lags, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lags)
	b.ReportMetric(float64(lags[len(lags)/2].Microseconds()), "p50-lag-µs")
	b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds()), "p99-lag-µs")
}
