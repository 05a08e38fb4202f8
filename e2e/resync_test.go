package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// TestResyncFromActor: a replica that was down while more than the
// primary's log bound was written gets the volume as a streamed snapshot
// of the actor, while a writer keeps overwriting files; afterwards that
// replica alone holds everything: a new primary recovered from it (the
// other two replicas wiped) serves every file with its last content.
func TestResyncFromActor(t *testing.T) {
	requireCluster(t)
	c := newCluster(t, 3)
	const vol = "resync"
	p := c.startPrimary(vol, "p1", "--log-bytes", "1MiB")
	var mu sync.Mutex
	files := map[string][]byte{}
	writes := 0
	write := func(name string, size int) error {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte('a' + rand.IntN(26))
		}
		if err := os.WriteFile(p.path(name), data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		mu.Lock()
		files[name] = data
		writes++
		mu.Unlock()
		return nil
	}
	written := func() int {
		mu.Lock()
		defer mu.Unlock()
		return writes
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		must(write(fmt.Sprintf("before-%02d", i), 20<<10))
	}
	c.kill(2)
	for i := range 80 { // 2.5 MiB: past the 1 MiB log, so replica 3 needs a snapshot
		must(write(fmt.Sprintf("down-%02d", i), 32<<10))
	}

	stop, done := make(chan struct{}), make(chan error)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := write(fmt.Sprintf("before-%02d", i%10), 20<<10+i); err != nil {
				done <- err
				return
			}
		}
	}()
	c.start(2)
	testsupport.WaitFor(t, waitDeadline, "the primary resyncs replica 3 with a snapshot", func() bool {
		return strings.Contains(p.out.String(), "replica resynchronised with a snapshot")
	})
	after := written() + 20
	testsupport.WaitFor(t, waitDeadline, "20 more overwrites after the install", func() bool { return written() >= after })
	close(stop)
	must(<-done)
	if waitConverged(t, c, vol) == 0 {
		t.FailNow()
	}
	p.stop(t)

	for i := range 2 {
		c.kill(i)
		must(os.RemoveAll(c.reps[i].data))
		c.start(i)
	}
	p2 := c.startPrimary(vol, "p2")
	for name, want := range files {
		if got, err := os.ReadFile(p2.path(name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s recovered from the resynced replica alone: %v, %d bytes, want %d", name, err, len(got), len(want))
		}
	}
	p2.stop(t)
}
