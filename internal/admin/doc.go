// Package admin owns a node's admin endpoint and the status it reports:
// the HTTP server (Start: /metrics, /healthz, /readyz, /status and
// /debug/pprof), the JSON types of a node's status (NodeStatus and the
// types under it, ReplicaStatusFromPB for a replica's Status RPC) and of
// its readiness (Readiness: /readyz's body, 503 unless every part is
// ready), and `spoolfs status` (FetchStatus, PrintStatus,
// PrintReplicaRows, and Verdict: its exit status, Exit*).
//
// What is reported is not its business: a Source (node.Node) answers the
// status, health and readiness when asked, and node's collector the
// metrics, read from its actors, primaries and replica servers when
// scraped. It never makes a request to a mount (docs/failures.md,
// finding 1): /healthz asks the Source, which pings the actors.
//
// May import: the standard library, prometheus, zap and proto (the Status
// RPC's answer); never fsactor, replication, FUSE or buntdb
// (internal/layout). Goroutines: the HTTP server and its connections,
// until Stop.
package admin
