package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReaddirUnderMutation reads a directory over and over with small
// getdents buffers while another goroutine creates and unlinks names in
// it. Each pass must list every name that stayed present throughout
// exactly once, and no name twice. Churn names are never reused, so a name
// seen twice in one pass is always a duplicate.
func TestReaddirUnderMutation(t *testing.T) {
	pair := newPair(t)
	pair.deadline(t, 2*time.Minute)
	_, dir := pair.dirs(t)
	const stable = 150
	for i := 0; i < stable; i++ {
		if err := mkfile(fmt.Sprintf("%s/stable-%03d", dir, i)); err != nil {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	mutErr := make(chan error, 1)
	var mutations atomic.Int64
	go func() { mutErr <- churn(dir, &stop, &mutations) }()
	passes := 0
	for ; passes < 400 && (passes < 20 || mutations.Load() < 2000); passes++ {
		if err := readdirPass(dir, stable); err != nil {
			stop.Store(true)
			<-mutErr
			t.Fatalf("pass %d (after %d mutations): %v", passes, mutations.Load(), err)
		}
	}
	stop.Store(true)
	if err := <-mutErr; err != nil {
		t.Fatalf("mutator: %v", err)
	}
	t.Logf("%d readdir passes during %d creates/unlinks", passes, mutations.Load())
}

// churn creates churn-N names (N increasing) and unlinks old ones, keeping
// about 60 present, until stop.
func churn(dir string, stop *atomic.Bool, count *atomic.Int64) error {
	var live []string
	for n := 0; !stop.Load(); n++ {
		name := fmt.Sprintf("%s/churn-%06d", dir, n)
		if err := mkfile(name); err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
		live = append(live, name)
		if len(live) > 60 || n%3 == 0 && len(live) > 1 {
			victim := live[0]
			live = live[1:]
			if err := unix.Unlink(victim); err != nil {
				return fmt.Errorf("unlink %s: %w", victim, err)
			}
		}
		count.Add(1)
	}
	return nil
}

// readdirPass lists dir once and checks the pass.
func readdirPass(dir string, stable int) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer unix.Close(fd)
	ents, err := readDirFd(fd, 1024)
	if err != nil {
		return fmt.Errorf("getdents: %w", err)
	}
	seen := map[string]int{}
	stableSeen := 0
	for _, e := range ents {
		seen[e.Name]++
		if seen[e.Name] > 1 {
			return fmt.Errorf("%q listed twice in one pass (%d entries)", e.Name, len(ents))
		}
		var i int
		if _, err := fmt.Sscanf(e.Name, "stable-%03d", &i); err == nil {
			stableSeen++
		}
	}
	if stableSeen != stable || seen["."] != 1 || seen[".."] != 1 {
		return fmt.Errorf("pass saw %d of %d stable names, . %d times, .. %d times", stableSeen, stable, seen["."], seen[".."])
	}
	return nil
}

// TestRenameRaces has goroutines rename a fixed set of files between
// directories, and the directories themselves, at random. Every file has
// names of its own (f<i>.a, f<i>.b), so no rename overwrites another file:
// at the end each file must exist exactly once, with its content.
func TestRenameRaces(t *testing.T) {
	pair := newPair(t)
	pair.deadline(t, 2*time.Minute)
	_, root := pair.dirs(t)
	const files, dirs, workers, attempts = 24, 4, 8, 1500
	for d := 0; d < dirs; d++ {
		if err := unix.Mkdir(fmt.Sprintf("%s/d%d.x", root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for f := 0; f < files; f++ {
		if err := writeSync(fmt.Sprintf("%s/d%d.x/f%d.a", root, f%dirs, f), fileContent(f)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var renamed atomic.Int64
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			if err := renameWorker(root, rand.New(rand.NewSource(seed)), files, dirs, attempts, &renamed); err != nil {
				errs <- err
			}
		}(int64(w))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d successful renames by %d goroutines", renamed.Load(), workers)
	if renamed.Load() < workers {
		t.Errorf("only %d renames succeeded: the race did not happen", renamed.Load())
	}
	checkRenamedFiles(t, root, files, dirs)
}

func fileContent(f int) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("file %d;", f)), 100+f)
}

// renameWorker tries renames between guessed locations; ENOENT is the
// common, expected answer (the guess was wrong or the file moved away).
func renameWorker(root string, rng *rand.Rand, files, dirs, attempts int, ok *atomic.Int64) error {
	pick := func(v string) string { return []string{v + ".x", v + ".y"}[rng.Intn(2)] }
	for i := 0; i < attempts; i++ {
		var from, to string
		if rng.Intn(10) == 0 { // a directory changes name
			d := fmt.Sprintf("d%d", rng.Intn(dirs))
			from, to = root+"/"+pick(d), root+"/"+pick(d)
		} else {
			f := fmt.Sprintf("f%d", rng.Intn(files))
			from = fmt.Sprintf("%s/%s/%s", root, pick(fmt.Sprintf("d%d", rng.Intn(dirs))), []string{f + ".a", f + ".b"}[rng.Intn(2)])
			to = fmt.Sprintf("%s/%s/%s", root, pick(fmt.Sprintf("d%d", rng.Intn(dirs))), []string{f + ".a", f + ".b"}[rng.Intn(2)])
		}
		err := unix.Rename(from, to)
		switch {
		case err == nil:
			ok.Add(1)
		case errors.Is(err, unix.ENOENT):
		default:
			return fmt.Errorf("rename %s %s: %w", from, to, err)
		}
	}
	return nil
}

// checkRenamedFiles walks root: each directory once, each file once, every
// content intact, nothing else.
func checkRenamedFiles(t *testing.T, root string, files, dirs int) {
	where := map[int][]string{}
	dirEnts, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(dirEnts) != dirs {
		t.Errorf("%d directories at the end, want %d: %v", len(dirEnts), dirs, dirEnts)
	}
	for _, d := range dirEnts {
		ents, err := os.ReadDir(root + "/" + d.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			var f int
			var suffix string
			if _, err := fmt.Sscanf(e.Name(), "f%d.%s", &f, &suffix); err != nil || f >= files {
				t.Errorf("unexpected name %s/%s", d.Name(), e.Name())
				continue
			}
			path := root + "/" + d.Name() + "/" + e.Name()
			where[f] = append(where[f], path)
			if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, fileContent(f)) {
				t.Errorf("%s: content differs (%d bytes, err %v)", path, len(got), err)
			}
		}
	}
	for f := 0; f < files; f++ {
		if len(where[f]) != 1 {
			t.Errorf("file %d found %d times: %v", f, len(where[f]), where[f])
		}
	}
}

// TestManyClients runs 16 goroutines doing the spool pattern of
// BENCHMARKS.md (create -D, 16 KiB in 4 KiB writes, fsync, close; -H.tmp
// 1 KiB, fsync, close, rename to -H; read both; unlink both) for a bounded
// count. Every read is verified; every 8th message is kept and verified at
// the end, and nothing else may remain.
func TestManyClients(t *testing.T) {
	pair := newPair(t)
	pair.deadline(t, 3*time.Minute)
	_, root := pair.dirs(t)
	const clients, messages = 16, 40
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for m := 0; m < messages; m++ {
				if err := spoolMessage(root, c, m, m%8 == 0); err != nil {
					errs <- fmt.Errorf("client %d message %d: %w", c, m, err)
					return
				}
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var want []string
	for c := 0; c < clients; c++ {
		for m := 0; m < messages; m += 8 {
			id := msgID(c, m)
			want = append(want, id+"-D", id+"-H")
			for _, suffix := range []string{"-D", "-H"} {
				got, err := os.ReadFile(root + "/" + id + suffix)
				if err != nil || !bytes.Equal(got, msgBody(c, m, suffix)) {
					t.Errorf("kept %s%s: %d bytes, err %v", id, suffix, len(got), err)
				}
			}
		}
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("directory at the end:\n got %v\nwant %v", got, want)
	}
}

func msgID(c, m int) string { return fmt.Sprintf("1q%02d%04d-000%d", c, m, c%10) }

// msgBody is the content of a message's -D (16 KiB) or -H (1 KiB) file.
func msgBody(c, m int, suffix string) []byte {
	n := 16 << 10
	if suffix == "-H" {
		n = 1 << 10
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(c*31 + m*7 + i + len(suffix))
	}
	return b
}

// spoolMessage writes, publishes, reads back and (unless keep) deletes one
// message.
func spoolMessage(root string, c, m int, keep bool) error {
	base := root + "/" + msgID(c, m)
	if err := writeChunked(base+"-D", msgBody(c, m, "-D"), 4096); err != nil {
		return err
	}
	if err := writeChunked(base+"-H.tmp", msgBody(c, m, "-H"), 4096); err != nil {
		return err
	}
	if err := unix.Rename(base+"-H.tmp", base+"-H"); err != nil {
		return fmt.Errorf("rename -H.tmp: %w", err)
	}
	for _, suffix := range []string{"-D", "-H"} {
		got, err := os.ReadFile(base + suffix)
		if err != nil {
			return fmt.Errorf("read back %s: %w", suffix, err)
		}
		if !bytes.Equal(got, msgBody(c, m, suffix)) {
			return fmt.Errorf("read back %s: %d bytes differ from what was written", suffix, len(got))
		}
	}
	if keep {
		return nil
	}
	for _, suffix := range []string{"-D", "-H"} {
		if err := unix.Unlink(base + suffix); err != nil {
			return fmt.Errorf("unlink %s: %w", suffix, err)
		}
	}
	return nil
}

// writeChunked creates path and writes data in chunks, then fsync, close.
func writeChunked(path string, data []byte, chunk int) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		if n, err := unix.Write(fd, data[off:end]); err != nil || n != end-off {
			unix.Close(fd)
			return fmt.Errorf("write %s at %d: n=%d %v", path, off, n, err)
		}
	}
	if err := unix.Fsync(fd); err != nil {
		unix.Close(fd)
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}
