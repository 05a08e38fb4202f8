// Package process owns the setup every spoolfs command runs through: the
// process logger (NewLogger: zap's production configuration without
// sampling, console on a terminal and JSON otherwise; LogWriteFailures
// counts lines it could not write, IsTerminal), the signals that must not
// kill a server (SurviveSIGPIPE; NotifyStop: SIGINT and SIGTERM stop,
// SIGHUP stops only a process with a controlling terminal and is logged
// otherwise — docs/failures.md, finding 4) and the open-file limit
// (RaiseFileLimit).
//
// May import: the standard library, zap and x/sys/unix; nothing of this
// module (internal/layout). Goroutines: NotifyStop's SIGHUP logger, until
// its stop function is called.
package process
