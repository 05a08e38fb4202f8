// Package volume is a volume's data model: records, attributes, extents and
// snapshots, as the actor (fsactor) emits and restores them and as
// replication ships, stores and recovers them.
//
// It is the one definition of these types on both sides of the seam
// between fsactor and replication: fsactor and replication refer to it
// (their Record, Snapshot, Attr ... are aliases of this package's), so a
// record leaves the actor and reaches a replica's store without a copy or
// a field-by-field conversion. It imports nothing of this module and no
// third-party code (internal/layout checks it): neither FUSE nor gRPC
// leaks across the seam through it.
package volume
