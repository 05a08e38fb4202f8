// Package testsupport is the one home of what tests of several packages
// need from the machine and from time: whether they may run here
// (RequireMount, RequireRoot, RequireCmd, RequireCPUs), the spoolfs binary
// and vendored C test programs (fsx) built once per test binary (Binary,
// CBinary, Run), and waiting for a condition
// with a deadline (WaitFor, WaitForErr).
//
// The CI rule: a test that cannot run here (no FUSE, not root, a missing
// command) fails when CI=true, with the reason, and skips with the reason
// otherwise. Every environment skip of the module goes through this
// package (Unavailable) so that no test is silently skipped in CI. Skips of
// long tests under -short are not environment skips: SkipShort says so in
// one form.
//
// Only tests import it (_test.go files and the test helpers they use):
// TestImportBoundaries (internal/layout) fails when a non-test package
// depends on it. It imports nothing of this module.
package testsupport
