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
	"unsafe"

	"go.uber.org/zap"
)

// Checksums on log entries, and the end of a database file.
//
// buntdb keeps no checksums: a log entry damaged on disk would load as a
// batch of wrong keys. And on a file system that orders an append's data
// before its new size (ext4 with data=ordered) a power cut leaves a batch
// whole or absent, but others (XFS, ext4 data=writeback) can leave the
// size of an append without all of its data: zeros in the holes. So every
// log entry carries a CRC-32C (sealEntry), and opening a file keeps it only
// up to the last whole command whose entry checks out (cutTornEnd). What is
// dropped there can only be the batch written after the last good fsync,
// which was never acknowledged, so nothing after it can be a whole log
// entry; if one is, the file is damaged, and it is moved aside.

// Log entries are sealed: a version byte, the CRC-32C of the change set,
// the change set. Entries an older version wrote start with a change
// set's flag byte (0 or 1) and have no checksum.
const entrySealed = 2

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const sealLen = 1 + 4

// sealEntry fills the header reserved at the start of b (sealLen bytes)
// for the change set that follows it, and returns the entry. It takes b:
// the string shares its bytes (no copy of the batch), so b must not be
// touched again.
func sealEntry(b []byte) string {
	b[0] = entrySealed
	binary.LittleEndian.PutUint32(b[1:sealLen], crc32.Checksum(b[sealLen:], castagnoli))
	return unsafe.String(unsafe.SliceData(b), len(b))
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
	if crc32.Update(0, castagnoli, unsafe.Slice(unsafe.StringData(body), len(body))) != want {
		return "", errors.New("log entry: checksum mismatch")
	}
	return body, nil
}

const whyNotCommand = "not a command"

// cutTornEnd cuts the file at path after its last whole command, dropping
// an interrupted last batch (and zeros a file system left after it),
// before buntdb reads it. A damaged file is left as it is and reported, to
// be moved aside: one whose first command is not whole, one with bytes
// that start no command where a command should start, or one with a whole
// log entry after the point where it stops being whole — a bad checksum
// or a changed length in the middle of the file, which buntdb alone would
// either read as good or cut, losing the batches after it.
func cutTornEnd(path string, log *zap.Logger) (damaged bool, err error) {
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
	later := false
	if data > end && why != whyNotCommand && end > 0 {
		if later, err = entryAfter(f, end+1, data); err != nil {
			return false, fmt.Errorf("read %s: %w", path, err)
		}
	}
	switch torn := data - end; {
	case torn == 0: // zeros only
	case why == whyNotCommand || end == 0 || later:
		log.Error("replica database damaged past its last whole command",
			zap.String("path", path), zap.Int64("at", end), zap.Int64("bytes_after", torn),
			zap.String("why", why), zap.Bool("whole_entries_after", later))
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

// logEntryStart is how every log entry's command begins.
var logEntryStart = []byte("*3\r\n$3\r\nset\r\n$")

// entryAfter says whether a whole log entry with a good seal starts in f
// between from and to.
func entryAfter(f *os.File, from, to int64) (bool, error) {
	const window = 1 << 20
	buf := make([]byte, window+len(logEntryStart))
	for lo := from; lo < to; lo += window {
		b := buf[:min(int64(len(buf)), to-lo)]
		if _, err := f.ReadAt(b, lo); err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		for i := 0; ; {
			j := bytes.Index(b[i:], logEntryStart)
			if j < 0 || int64(i+j) >= window {
				break
			}
			at := lo + int64(i+j)
			r := bufio.NewReader(io.NewSectionReader(f, at, to-at))
			c, err := readCommand(r)
			if err != nil {
				return false, err
			}
			if c.why == "whole" && c.sealed {
				return true, nil
			}
			i += j + 1
		}
	}
	return false, nil
}

// dataEnd returns the end of the last non-zero byte of f at or after
// from, reading backwards from size.
func dataEnd(f *os.File, from, size int64) (int64, error) {
	buf := make([]byte, 1<<20)
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
// ends, and why the next one is not whole: the end of the file, zeros, a
// command cut short, or a log entry whose seal fails.
func lastWholeCommand(f *os.File) (end int64, why string, err error) {
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, 1<<62), 1<<20)
	var off int64
	for {
		c, err := readCommand(r)
		if err != nil {
			return 0, "", err
		}
		switch c.why {
		case "":
			return off, "", nil // the end of the file
		case "whole":
			off += c.n
		default:
			return off, c.why, nil
		}
	}
}

// command is what readCommand found.
type command struct {
	n      int64  // its length, when whole
	why    string // "whole", or why it is not ("" at the end of the file)
	sealed bool   // a log entry whose seal was checked
}

// readCommand reads one command from r. err is for read errors only.
func readCommand(r *bufio.Reader) (command, error) {
	c, err := r.ReadByte()
	if err == io.EOF {
		return command{}, nil
	} else if err != nil {
		return command{}, err
	}
	if c == 0 {
		return command{why: "zeros"}, nil
	}
	if c != '*' {
		return command{why: whyNotCommand}, nil
	}
	n := int64(1)
	args, w, why, err := readCount(r)
	if err != nil || why != "" {
		return command{why: why}, err
	}
	n += w
	var key string
	sealed := false
	for i := int64(0); i < args; i++ {
		c, err := r.ReadByte()
		if err == io.EOF {
			return command{why: "cut short"}, nil
		} else if err != nil {
			return command{}, err
		}
		if c != '$' {
			return command{why: "not a bulk string"}, nil
		}
		size, w, why, err := readCount(r)
		if err != nil || why != "" {
			return command{why: why}, err
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
			ok, err := checkSeal(r, size)
			if err != nil || (ok != "whole" && ok != "sealed") {
				return command{why: ok}, err
			}
			sealed = ok == "sealed"
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
			return command{why: "no CRLF after a bulk string"}, nil
		}
		n += size + 2
	}
	return command{n: n, why: "whole", sealed: sealed}, nil
}

func short(err error) (command, error) {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return command{why: "cut short"}, nil
	}
	return command{}, err
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
// seal as it goes: "sealed" when it checks out, "whole" for an entry an
// older version wrote (no seal), or why it is not whole.
func checkSeal(r *bufio.Reader, size int64) (string, error) {
	fail := func(err error) (string, error) {
		c, err := short(err)
		return c.why, err
	}
	if size == 0 {
		return "whole", nil
	}
	head, err := r.Peek(int(min(size, sealLen)))
	if err != nil {
		return fail(err)
	}
	if head[0] != entrySealed {
		if _, err := r.Discard(int(size)); err != nil {
			return fail(err)
		}
		return "whole", nil
	}
	if size < sealLen {
		return "log entry cut short", nil
	}
	want := binary.LittleEndian.Uint32(head[1:sealLen])
	if _, err := r.Discard(sealLen); err != nil {
		return fail(err)
	}
	h := crc32.New(castagnoli)
	if _, err := io.CopyN(h, r, size-sealLen); err != nil {
		return fail(err)
	}
	if h.Sum32() != want {
		return "log entry checksum mismatch", nil
	}
	return "sealed", nil
}
