package node

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/spoolfs/spoolfs/fsactor"
	"github.com/spoolfs/spoolfs/replication"
)

var _ fsactor.Sink = (*replSink)(nil)

func TestSinkErrors(t *testing.T) {
	cases := []struct {
		in   error
		want error
	}{
		{fmt.Errorf("x: %w", replication.ErrFenced), fsactor.ErrFenced},
		{fmt.Errorf("x: %w (%w)", replication.ErrNoQuorum, context.DeadlineExceeded), fsactor.ErrNotDurable},
		{replication.ErrClosed, fsactor.ErrNotDurable},
	}
	for _, c := range cases {
		got := sinkError(c.in)
		if !errors.Is(got, c.want) || !errors.Is(got, c.in) {
			t.Errorf("%v → %v, want it to wrap %v and the cause", c.in, got, c.want)
		}
	}
	if sinkError(nil) != nil {
		t.Error("nil error mapped to an error")
	}
}
