package replication

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// termFile is the accepted term of a volume on a replica and the node
// that acquired it, kept in <volume>.term beside the database (doc.go).
type termFile struct {
	Term   uint64
	Holder string
}

func readTermFile(path string) (termFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return termFile{}, nil
	}
	if err != nil {
		return termFile{}, fmt.Errorf("read term file: %w", err)
	}
	term, holder, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	t, err := strconv.ParseUint(term, 10, 64)
	if err != nil {
		return termFile{}, fmt.Errorf("term file %s: %w", path, err)
	}
	return termFile{Term: t, Holder: holder}, nil
}

// writeTermFile replaces the term file durably: write, fsync, rename,
// fsync the directory.
func writeTermFile(path string, tf termFile) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write term file: %w", err)
	}
	_, err = fmt.Fprintf(f, "%d %s\n", tf.Term, tf.Holder)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write term file %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write term file: %w", err)
	}
	return syncDir(filepath.Dir(path))
}
