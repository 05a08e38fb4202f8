package replication

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/buntdb"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// The zeroed tail of a database file.
//
// A batch appended to a file makes its fsync commit ext4's journal: the
// file's size and its newly allocated blocks are metadata. That journal
// commit is a second device write and a wait on the jbd2 thread, about
// half the CPU and most of the context switches of a commit on the bench
// VM. So the store keeps a few MiB of zeros, really written, past the end
// of the buntdb data: a batch overwrites blocks the file already has, the
// size does not change, and fdatasync has nothing to do but the data
// write and the device's cache flush (docs/benchmarks.md has the
// figures). buntdb writes each batch where its previous write ended, so
// it never sees the tail; the store removes it before buntdb reads the
// file (trimTail) and adds it again after (extendTail).
//
// What this costs in crash safety, and how it is paid: an append that a
// power cut interrupts stays invisible, because ext4 makes the new size
// durable only after the data; an overwrite inside the file has no such
// ordering, so a cut can leave any part of the last, unacknowledged batch
// on disk, with zeros in its holes. Every log entry therefore carries a
// CRC-32C (sealEntry), and opening the file keeps it only up to the last
// whole command whose entry checks out: at most the one batch written
// after the last good fsync is dropped.
const (
	tailChunk = 4 << 20 // zeros added at a time: about 3 ms of writing here
	tailLow   = 1 << 20 // add a chunk when less than this is left
	// tailFreeMin: the tail grows only while the file system keeps this
	// much free, so it never takes the last space a batch needs.
	tailFreeMin = 8 * tailChunk
	// tailRetry: after the tail could not grow, plain appends until then.
	tailRetry = 30 * time.Second
	// maxTorn bounds what trimTail drops as an interrupted batch: more
	// non-zero bytes past the last whole command than any batch writes is
	// not a torn write but a damaged file, which buntdb refuses
	// (openDB moves it aside).
	maxTorn = maxBatchBytes + 1<<20
)

var zeros = make([]byte, 1<<20)

// Log entries are sealed: a version byte, the CRC-32C of the change set,
// the change set. Entries an older version wrote start with a change
// set's flag byte (0 or 1) and have no checksum.
const entrySealed = 2

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const sealLen = 1 + 4

// sealEntry fills the header reserved at the start of b (sealLen bytes)
// for the change set that follows it.
func sealEntry(b []byte) string {
	b[0] = entrySealed
	binary.LittleEndian.PutUint32(b[1:sealLen], crc32.Checksum(b[sealLen:], castagnoli))
	return string(b)
}

// openEntry returns the change set of a log entry, checking its seal.
func openEntry(s string) (string, error) {
	if len(s) == 0 || s[0] != entrySealed {
		return s, nil // an unsealed entry of an older version
	}
	if len(s) < sealLen {
		return "", errors.New("log entry: cut short")
	}
	want := binary.LittleEndian.Uint32([]byte(s[1:sealLen]))
	body := s[sealLen:]
	if crc32.Update(0, castagnoli, []byte(body)) != want {
		return "", errors.New("log entry: checksum mismatch")
	}
	return body, nil
}

// respSetLen is how many bytes buntdb writes for a transaction that sets
// one key without expiry: the command as an array of three bulk strings
// (buntdb's dbItem.writeSetTo). TestRespSetLen holds it to buntdb.
func respSetLen(key, val string) int64 {
	bulk := func(n int) int64 { return int64(1 + len(strconv.Itoa(n)) + 2 + n + 2) }
	return int64(len("*3\r\n")) + bulk(len("set")) + bulk(len(key)) + bulk(len(val))
}

const whyNotCommand = "not a command"

// trimTail cuts the file at path to its last whole command, dropping the
// zero tail and an interrupted last batch, before buntdb reads it. A
// damaged file is left as it is and reported, to be moved aside: that
// includes a log entry whose checksum fails with more after it than a
// batch, which buntdb would read as good.
func trimTail(path string, log *zap.Logger) (damaged bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", path, err)
	}
	end, why, err := lastWholeCommand(f)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if end == fi.Size() {
		return false, nil
	}
	data, err := dataEnd(f, end, fi.Size())
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	switch torn := data - end; {
	case torn == 0: // zeros only: the tail
	case why == whyNotCommand || end == 0 || torn > maxTorn:
		// A batch is written where the last one ended, over zeros: what
		// a power cut leaves of it starts with '*' or a zero, and after a
		// whole command. Anything else is damage.
		log.Error("replica database damaged past its last whole command",
			zap.String("path", path), zap.Int64("at", end), zap.Int64("bytes_after", torn), zap.String("why", why))
		return true, nil
	default:
		log.Warn("dropping an interrupted batch at the end of the database (never acknowledged)",
			zap.String("path", path), zap.Int64("at", end), zap.Int64("bytes", torn), zap.String("why", why))
	}
	if err := f.Truncate(end); err != nil {
		return false, fmt.Errorf("cut %s to %d bytes: %w", path, end, err)
	}
	return false, nil
}

// dataEnd returns the end of the last non-zero byte of f at or after
// from, reading backwards from size.
func dataEnd(f *os.File, from, size int64) (int64, error) {
	buf := make([]byte, len(zeros))
	for hi := size; hi > from; {
		lo := max(from, hi-int64(len(buf)))
		b := buf[:hi-lo]
		if _, err := f.ReadAt(b, lo); err != nil {
			return 0, err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != 0 {
				return lo + int64(i) + 1, nil
			}
		}
		hi = lo
	}
	return from, nil
}

// lastWholeCommand reads f's commands (RESP arrays of bulk strings, as
// buntdb writes them) from the start and returns where the last whole one
// ends, and why the next one is not whole: the end of the file, the zero
// tail, a command cut short, or a log entry whose seal fails.
func lastWholeCommand(f *os.File) (end int64, why string, err error) {
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, 1<<62), 1<<20)
	var off int64
	for {
		n, ok, err := readCommand(r)
		if err != nil {
			return 0, "", err
		}
		if ok == "" {
			return off, "", nil // the end of the file
		}
		if ok != "whole" {
			return off, ok, nil
		}
		off += n
	}
}

// readCommand reads one command from r: its length and "whole", or why it
// is not ("" at the end of the file). err is for read errors only.
func readCommand(r *bufio.Reader) (int64, string, error) {
	c, err := r.ReadByte()
	if err == io.EOF {
		return 0, "", nil
	} else if err != nil {
		return 0, "", err
	}
	if c == 0 {
		return 0, "zero tail", nil
	}
	if c != '*' {
		return 0, whyNotCommand, nil
	}
	n := int64(1)
	args, w, why, err := readCount(r)
	if err != nil || why != "" {
		return 0, why, err
	}
	n += w
	var key string
	for i := int64(0); i < args; i++ {
		c, err := r.ReadByte()
		if err == io.EOF {
			return 0, "cut short", nil
		} else if err != nil {
			return 0, "", err
		}
		if c != '$' {
			return 0, "not a bulk string", nil
		}
		size, w, why, err := readCount(r)
		if err != nil || why != "" {
			return 0, why, err
		}
		n += 1 + w
		switch {
		case i == 1 && size <= 4096:
			b := make([]byte, size)
			if _, err := io.ReadFull(r, b); err != nil {
				return short(err)
			}
			key = string(b)
		case i == 2 && args == 3 && strings.HasPrefix(key, logPrefix):
			if ok, err := checkSeal(r, size); err != nil || ok != "whole" {
				return 0, ok, err
			}
		default:
			if _, err := r.Discard(int(size)); err != nil {
				return short(err)
			}
		}
		var crlf [2]byte
		if _, err := io.ReadFull(r, crlf[:]); err != nil {
			return short(err)
		}
		if crlf != [2]byte{'\r', '\n'} {
			return 0, "no CRLF after a bulk string", nil
		}
		n += size + 2
	}
	return n, "whole", nil
}

func short(err error) (int64, string, error) {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return 0, "cut short", nil
	}
	return 0, "", err
}

// readCount reads a decimal count and its CRLF: the count, the bytes
// read, or why it is not one.
func readCount(r *bufio.Reader) (int64, int64, string, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, io.EOF) {
		return 0, 0, "cut short", nil
	} else if err != nil {
		return 0, 0, "bad count", nil // bufio.ErrBufferFull: no count is that long
	}
	digits, ok := bytes.CutSuffix(line, []byte("\r\n"))
	v, perr := strconv.ParseInt(string(digits), 10, 64)
	if !ok || perr != nil || v < 0 {
		return 0, 0, "bad count", nil
	}
	return v, int64(len(line)), "", nil
}

// checkSeal reads a log entry's value of size bytes from r and checks its
// seal as it goes.
func checkSeal(r *bufio.Reader, size int64) (string, error) {
	if size == 0 {
		return "whole", nil
	}
	head, err := r.Peek(int(min(size, sealLen)))
	if err != nil {
		_, ok, err := short(err)
		return ok, err
	}
	if head[0] != entrySealed {
		if _, err := r.Discard(int(size)); err != nil {
			_, ok, err := short(err)
			return ok, err
		}
		return "whole", nil
	}
	if size < sealLen {
		return "log entry cut short", nil
	}
	want := binary.LittleEndian.Uint32(head[1:sealLen])
	if _, err := r.Discard(sealLen); err != nil {
		_, ok, err := short(err)
		return ok, err
	}
	h := crc32.New(castagnoli)
	if _, err := io.CopyN(h, r, size-sealLen); err != nil {
		_, ok, err := short(err)
		return ok, err
	}
	if h.Sum32() != want {
		return "log entry checksum mismatch", nil
	}
	return "whole", nil
}

// extendTail adds a chunk of zeros past the end of the file when less
// than tailLow is left, and makes it durable, so that the next batches
// overwrite blocks the file has. Best effort: when the file system is
// short of space, or the zeros cannot be written, the tail stays as it
// is and batches are appended, as they would be without it; it is tried
// again tailRetry later. Only a failed fdatasync is an error (the store
// is then unusable, like after a failed commit).
func (s *volStore) extendTail() error {
	if s.syncf == nil || s.fileEnd-s.dataEnd >= tailLow || time.Now().Before(s.tailRetryAt) {
		return nil
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(s.syncf.Fd()), &fs); err != nil || int64(fs.Bavail)*fs.Bsize < tailFreeMin {
		s.tailRetryAt = time.Now().Add(tailRetry)
		return nil
	}
	from := s.fileEnd
	for off := from; off < from+tailChunk; off += int64(len(zeros)) {
		if _, err := s.syncf.WriteAt(zeros, off); err != nil {
			s.log.Warn("cannot add zeros past the end of the database: batches are appended",
				zap.String("path", s.path), zap.Error(err), zap.Duration("retry_in", tailRetry))
			s.tailRetryAt = time.Now().Add(tailRetry)
			if terr := s.syncf.Truncate(from); terr != nil {
				return fmt.Errorf("take back the zeros added to %s: %w", s.path, terr)
			}
			return nil
		}
	}
	if err := fdatasyncHeld(s.syncf); err != nil {
		return fmt.Errorf("fdatasync %s: %w", s.path, err)
	}
	s.fileEnd = from + tailChunk
	return nil
}

// checkDataEnd holds the store's count of the data end to the file after
// a commit: a newline ends the last command, and the tail, if any, starts
// with a zero. A miscount would make the next open cut where it should
// not; the store stops instead and the open that follows finds the end
// again.
func (s *volStore) checkDataEnd() error {
	var b [2]byte
	n, err := s.syncf.ReadAt(b[:], s.dataEnd-1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read back %s: %w", s.path, err)
	}
	if n < 1 || b[0] != '\n' || (n == 2 && b[1] != 0) {
		return fmt.Errorf("%s: the data does not end at %d bytes as counted (%w)", s.path, s.dataEnd, buntdb.ErrInvalid)
	}
	return nil
}
