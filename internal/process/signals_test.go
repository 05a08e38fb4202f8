package process

import (
	"os"
	"testing"
)

// TestLogWriteFailuresCounted: a failed log write is counted, not fatal.
func TestLogWriteFailuresCounted(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer w.Close()
	SurviveSIGPIPE()
	before := LogWriteFailures()
	if _, err := (countingWriter{w}).Write([]byte("line\n")); err == nil {
		t.Fatal("write to a closed pipe succeeded")
	}
	if got := LogWriteFailures() - before; got != 1 {
		t.Fatalf("failures counted %d, want 1", got)
	}
}
