package admin

import "fmt"

// Exit statuses of `spoolfs status` (documented in its --help and
// docs/operations.md, "Health"). 1, 2 and 3 kept the meaning they had
// before readiness was added; the worst condition found wins, in the
// order fenced, below quorum, lagging.
const (
	ExitHealthy     = 0 // every volume holds its term, has W replicas answering, none lags past the bound
	ExitUnreachable = 1 // the node (or every replica asked) did not answer
	ExitUsage       = 2 // a usage error (every spoolfs command)
	ExitFenced      = 3 // a volume is fenced: a newer term took it; it answers EROFS
	ExitBelowQuorum = 4 // a volume has fewer than W replicas answering: writes wait and fail with EIO
	// ExitLagging: a replica of a volume lacks more than the lag bound of
	// records, or a follower is behind its source by more than that, or
	// follows nothing (connected to no replica: its lag is unbounded).
	ExitLagging = 5
)

// Verdict is the exit status `spoolfs status` gives for ns, and why (""
// when healthy). maxLag is the lag bound in records (0: no bound).
func Verdict(ns NodeStatus, maxLag uint64) (int, string) {
	code, why := ExitHealthy, ""
	worse := func(c int, format string, args ...any) {
		if rank(c) > rank(code) {
			code, why = c, fmt.Sprintf(format, args...)
		}
	}
	for _, v := range ns.Volumes {
		if f := v.Follow; f != nil {
			switch {
			case !f.Connected:
				worse(ExitLagging, "volume %s: the follower is connected to no replica (%s); it shows the volume as of lsn %d",
					v.Volume, orNone(f.Err), f.Applied)
			case maxLag > 0 && f.LagRecords > maxLag:
				worse(ExitLagging, "volume %s: the follower is %d records behind %s, more than --max-lag %d",
					v.Volume, f.LagRecords, f.Source, maxLag)
			}
			continue
		}
		if v.Role == "fenced" {
			worse(ExitFenced, "volume %s is fenced: another node holds a newer term (mutations answer EROFS)", v.Volume)
			continue
		}
		if v.Answering < v.W {
			worse(ExitBelowQuorum, "volume %s is below quorum: %d of %d replicas answered within %s, %d needed (writes wait and fail with EIO)",
				v.Volume, v.Answering, len(v.Links), v.ReadyWithin, v.W)
		}
		for _, l := range v.Links {
			if maxLag > 0 && l.Lag > maxLag {
				worse(ExitLagging, "volume %s: replica %s lacks %d records, more than --max-lag %d", v.Volume, l.Addr, l.Lag, maxLag)
			}
		}
	}
	return code, why
}

// rank orders the conditions by severity.
func rank(code int) int {
	switch code {
	case ExitFenced:
		return 3
	case ExitBelowQuorum:
		return 2
	case ExitLagging:
		return 1
	}
	return 0
}

func orNone(s string) string {
	if s == "" {
		return "no error reported"
	}
	return s
}
