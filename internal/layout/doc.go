// Package layout holds no code: its test (layout_test.go) checks the import
// boundaries of every package of the module against the layout table of
// DESIGN.md and docs/architecture.md (fsactor never reaches gRPC, buntdb,
// replication, node or proto; replication never reaches FUSE, fsactor or
// node; proto imports none of ours...), and that only tests depend on
// internal/testsupport. The table lives in that test only.
package layout
