// Package fsactor is the state machine of one mounted volume and the
// goroutines that feed it.
//
// Ownership: one goroutine, the actor, owns the whole state of the volume
// (inodes, dentries, open handles, lookup counts, file contents in memfd,
// the record log head). Nothing else reads or writes it and no mutex guards
// it. A reader goroutine is the only caller of Connection.ReadOp and hands
// each op, in the kernel's order, to the actor's mailbox. Handlers that must
// wait return a task that runs on its own goroutine and replies itself.
// Kernel notifications go through a bounded worker pool that writes to the
// FUSE device, never from the actor or the reader.
//
// fsactor never imports gRPC, buntdb, replication, node or proto: records
// leave through the Sink interface (record.go), owned here.
package fsactor
