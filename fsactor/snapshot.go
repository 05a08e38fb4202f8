package fsactor

import "github.com/spoolfs/spoolfs/volume"

// Snapshot, SnapInode and SnapDirent are package volume's (see record.go):
// a whole volume at one LSN, what recovery loads into a new actor and what
// a full resync ships to a replica.
type (
	Snapshot   = volume.Snapshot
	SnapInode  = volume.SnapInode
	SnapDirent = volume.SnapDirent
)
