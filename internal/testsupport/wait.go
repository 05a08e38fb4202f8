package testsupport

import (
	"errors"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Polling intervals of WaitFor: short at first (most conditions hold
// within milliseconds), longer later (a slow machine is not hammered).
const (
	firstPoll = time.Millisecond
	maxPoll   = 50 * time.Millisecond
)

// WaitFor polls cond with a short backoff until it holds; after timeout
// it fails the test with what it waited for.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	errFalse := errors.New("condition false")
	WaitForErr(t, timeout, what, func() error {
		if cond() {
			return nil
		}
		return errFalse
	})
}

// WaitForErr polls check with a short backoff until it returns nil; after
// timeout it fails the test with what it waited for and the last error
// check returned (the state it last saw).
func WaitForErr(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	if err := Poll(timeout, check); err != nil {
		t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
	}
}

// Poll calls check with a short backoff (cenkalti/backoff: firstPoll
// doubling to maxPoll) until it returns nil, and returns
// nil; or, after timeout, the last error check returned. For goroutines
// other than the test's, and for callers that report the failure
// themselves.
func Poll(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	pause := &backoff.ExponentialBackOff{InitialInterval: firstPoll, Multiplier: 2, MaxInterval: maxPoll}
	for {
		err := check()
		if err == nil {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return err
		}
		time.Sleep(min(pause.NextBackOff(), left))
	}
}
