package process

// Signals that do not mean "stop" never stop a serving process
// (docs/failures.md, finding 4). Go's default for SIGPIPE kills the
// process when a write to stdout or stderr finds a closed pipe (`spoolfs
// run | tee` after Ctrl-C stopped tee), and its default for SIGHUP kills it
// too: either left the mount "Transport endpoint is not connected".

import (
	"os"
	"os/signal"
	"sync"
	"syscall"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

var pipeOnce sync.Once

// SurviveSIGPIPE makes a write to a closed stdout or stderr fail with
// EPIPE instead of killing the process. A channel notified of SIGPIPE is
// enough (os/signal: "If the program calls Notify to receive SIGPIPE
// signals, the file descriptor number does not matter"); it is never read,
// and never logged (that log line would be one more failed write).
// Unlike signal.Ignore, a handled signal is reset to its default in the
// children this process starts (-- CMD), so they keep the usual SIGPIPE.
func SurviveSIGPIPE() {
	pipeOnce.Do(func() { signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE) })
}

// NotifyStop subscribes sigs to the signals that stop a serving process:
// SIGINT, SIGTERM, and SIGHUP only when the process has a controlling
// terminal (its terminal hung up). Without one, SIGHUP (sent by a tool
// that means "reload", or left over from a session) is logged and served
// through. SIGPIPE never stops it (SurviveSIGPIPE). The returned function
// undoes the subscriptions but SIGPIPE's.
func NotifyStop(sigs chan<- os.Signal, log *zap.Logger) (stop func()) {
	SurviveSIGPIPE()
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	if hasControllingTerminal() {
		signal.Notify(sigs, syscall.SIGHUP)
		return func() { signal.Stop(sigs) }
	}
	hup := make(chan os.Signal, 1)
	done := make(chan struct{})
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for {
			select {
			case <-hup:
				log.Warn("SIGHUP does not stop spoolfs without a controlling terminal; stop it with SIGTERM or SIGINT")
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(sigs)
		signal.Stop(hup)
		close(done)
	}
}

// hasControllingTerminal says whether this process has a controlling
// terminal: /dev/tty opens only then.
func hasControllingTerminal() bool {
	fd, err := unix.Open("/dev/tty", unix.O_RDONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}
