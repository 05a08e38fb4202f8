package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// treeState is what the differential test compares of a whole tree: one
// line per entry (name, type, mode, size, nlink, owner, symlink target,
// xattrs, content hash) and the hard-link groups as a partition of paths
// (which paths share an inode, never the inode numbers themselves).
//
// Left out, on purpose: times (values differ by nature; per-op time
// changes are compared in posix_test.go), st_blocks (allocation is the
// filesystem's business; the sparse case checks it), directory sizes
// (filesystem convention, see statLine) and inode numbers.
type treeState struct {
	Lines  []string
	Groups []string
}

// snapshotTree walks root (not following symlinks) and renders it.
func snapshotTree(root string) (treeState, error) {
	var ts treeState
	inodes := map[uint64][]string{}
	if err := walkTree(root, "", &ts, inodes); err != nil {
		return ts, err
	}
	for _, paths := range inodes {
		if len(paths) > 1 {
			sort.Strings(paths)
			ts.Groups = append(ts.Groups, strings.Join(paths, " = "))
		}
	}
	sort.Strings(ts.Groups)
	return ts, nil
}

func walkTree(root, rel string, ts *treeState, inodes map[uint64][]string) error {
	ents, err := os.ReadDir(root + "/" + rel)
	if err != nil {
		return fmt.Errorf("readdir %s: %w", rel, err)
	}
	for _, e := range ents {
		path := e.Name()
		if rel != "" {
			path = rel + "/" + e.Name()
		}
		line, st, err := describeEntry(root+"/"+path, path)
		if err != nil {
			return err
		}
		ts.Lines = append(ts.Lines, line)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := walkTree(root, path, ts, inodes); err != nil {
				return err
			}
		} else {
			inodes[st.Ino] = append(inodes[st.Ino], path)
		}
	}
	return nil
}

// describeEntry renders one entry of a tree.
func describeEntry(abs, rel string) (string, unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Lstat(abs, &st); err != nil {
		return "", st, fmt.Errorf("lstat %s: %w", rel, err)
	}
	line := rel + ": " + statLine(&st)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		buf := make([]byte, 4096)
		n, err := unix.Readlink(abs, buf)
		if err != nil {
			return "", st, fmt.Errorf("readlink %s: %w", rel, err)
		}
		line += fmt.Sprintf(" target=%q", buf[:n])
	case unix.S_IFREG:
		h, err := hashFile(abs)
		if err != nil {
			return "", st, fmt.Errorf("read %s: %w", rel, err)
		}
		line += " sha256=" + h
	}
	x, err := describeXattrs(abs)
	if err != nil {
		return "", st, fmt.Errorf("xattrs of %s: %w", rel, err)
	}
	return line + x, st, nil
}

// hashFile hashes the content of path. It reads with raw system calls and
// O_NONBLOCK: a fifo then answers EOF or EAGAIN instead of blocking (the
// os package would park the goroutine on the poller and wait forever).
func hashFile(path string) (string, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	h := sha256.New()
	buf := make([]byte, 128<<10)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			return "", err
		}
		if n == 0 {
			return hex.EncodeToString(h.Sum(nil)[:12]), nil
		}
		h.Write(buf[:n])
	}
}

// describeXattrs renders the sorted xattrs of path with their values.
func describeXattrs(path string) (string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		return "", fmt.Errorf("listxattr: %w", err)
	}
	names := splitNames(buf[:n])
	if len(names) == 0 {
		return "", nil
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(" xattrs{")
	for i, name := range names {
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(path, name, v)
		if err != nil {
			return "", fmt.Errorf("getxattr %s: %w", name, err)
		}
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%q", name, v[:m])
	}
	b.WriteString("}")
	return b.String(), nil
}

// diffTrees lists the differences between two trees (at most max lines).
func diffTrees(ref, sub treeState, max int) []string {
	var out []string
	add := func(format string, args ...any) {
		if len(out) < max {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	diffSorted(ref.Lines, sub.Lines, func(s string) { add("only on tmpfs:   %s", s) }, func(s string) { add("only on subject: %s", s) })
	diffSorted(ref.Groups, sub.Groups, func(s string) { add("hard links on tmpfs only:   %s", s) },
		func(s string) { add("hard links on subject only: %s", s) })
	return out
}

// diffSorted calls onlyA/onlyB for lines in one list and not the other.
func diffSorted(a, b []string, onlyA, onlyB func(string)) {
	inB := map[string]bool{}
	for _, s := range b {
		inB[s] = true
	}
	inA := map[string]bool{}
	for _, s := range a {
		inA[s] = true
		if !inB[s] {
			onlyA(s)
		}
	}
	for _, s := range b {
		if !inA[s] {
			onlyB(s)
		}
	}
}

// TestTreeCompareDetects checks the tree comparison itself on two tmpfs:
// equal trees give no difference, and a mode, a content, an xattr or only
// the grouping of hard links each give one.
func TestTreeCompareDetects(t *testing.T) {
	requireMountable(t)
	a, b := mountTmpfs(t), mountTmpfs(t)
	build := func(root string, pairs [2][2]string) {
		for _, n := range []string{"w", "x", "y", "z"} {
			_ = os.Remove(root + "/" + n)
			if err := os.WriteFile(root+"/"+n, []byte("same"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range pairs {
			if err := os.Remove(root + "/" + p[1]); err != nil {
				t.Fatal(err)
			}
			if err := os.Link(root+"/"+p[0], root+"/"+p[1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	build(a, [2][2]string{{"w", "x"}, {"y", "z"}})
	build(b, [2][2]string{{"w", "y"}, {"x", "z"}})
	expectDiff := func(what string, want bool) {
		t.Helper()
		ta, err := snapshotTree(a)
		if err != nil {
			t.Fatal(err)
		}
		tb, err := snapshotTree(b)
		if err != nil {
			t.Fatal(err)
		}
		d := diffTrees(ta, tb, 10)
		if (len(d) > 0) != want {
			t.Fatalf("%s: differences %q, want some: %v", what, d, want)
		}
	}
	expectDiff("hard-link groups differ only in partition", true)
	build(b, [2][2]string{{"w", "x"}, {"y", "z"}})
	expectDiff("same trees", false)
	for _, change := range []struct {
		what string
		do   func(root string) error
	}{
		{"mode", func(r string) error { return os.Chmod(r+"/w", 0o600) }},
		{"content", func(r string) error { return os.WriteFile(r+"/y", []byte("SAME"), 0o644) }},
		{"xattr", func(r string) error { return unix.Setxattr(r+"/w", "user.k", []byte("v"), 0) }},
		{"symlink target", func(r string) error { return os.Symlink("w", r+"/s") }},
	} {
		if err := change.do(b); err != nil {
			t.Fatal(err)
		}
		expectDiff(change.what, true)
		if err := change.do(a); err != nil {
			t.Fatal(err)
		}
		expectDiff(change.what+" on both", false)
	}
}
