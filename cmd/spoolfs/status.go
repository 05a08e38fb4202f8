package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/credentials"

	"github.com/spoolfs/spoolfs/internal/admin"
	"github.com/spoolfs/spoolfs/internal/config"
	"github.com/spoolfs/spoolfs/node"
)

func init() { extraCommands = append(extraCommands, newStatusCmd) }

func newStatusCmd() *cobra.Command {
	var adminAddr, replicas, output string
	var asJSON bool
	var tf tlsFlags
	var timeout time.Duration
	var maxLag uint64
	c := &cobra.Command{
		Use:   "status [--admin ADDR | --replicas A,B,C] [-o table|json]",
		Short: "Print volumes, roles, terms, quorum and per-replica lag; exit non-zero when one is unhealthy",
		Long: `Ask a node's admin endpoint (--admin, default ` + defaultAdmin + `, where
spoolfs run --embedded serves it) for what it serves: each volume it is the
primary of, one row per replica, each volume it follows, and each replica
server it runs (per volume: accepted term, holder, last term, lsn, inodes,
bytes, commits).
With --replicas, ask the replicas themselves (their Status RPC) instead.

Columns of the volume table:
  VOLUME, ROLE   the volume; "primary", "primary (quorum lost)" (a wait ran
                 into its deadline: waits fail at once with EIO until its
                 record is durable), or "fenced" (a newer term took it;
                 mutations answer EROFS)
  TERM           the term this node holds the volume with
  HEAD, DURABLE  the last record made, the last one on W replicas
  W              the write quorum
  ANSWERING      replicas counting toward W now / replicas
  REPLICA        one replica's host:port
  CONNECTED      its stream is open (a stopped or cut-off replica may look
                 connected for up to 15 s: see ANSWERED)
  ANSWERED       how long ago it last answered (an ack, or a probe each
                 second while it has nothing to ack)
  QUORUM         it counts toward W: connected and answered within the
                 node's ready bound (--ready-within, default 3s)
  FIRST          a durability wait sends to it at once (one of the W
                 fastest lately); the others trail by a few ms
  ACK LATENCY    moving average from a send to its ack
  ACKED, LAG     the last record it holds; the records it lacks
  RESYNCS        snapshots installed on it by this primary
  LAST ERROR     why its stream last ended

Columns of the follower table:
  VOLUME, ROLE   the volume; "follower" ("follower (promoting)" during a
                 promotion, "follower (resuming)" after a failed one)
  TERM, APPLIED  the term and lsn of the last record it applied: what its
                 mount shows
  SOURCE         the replica it streams the records from
  CONNECTED      its stream is open
  SOURCE LSN     the source's last lsn, as last heard
  LAG            records it lacks (SOURCE LSN - APPLIED)
  LAG SECONDS    the delay of its last batch (durable on the source to
                 shown), or, while it lacks records, the time since it last
                 applied one; /readyz is 503 past --max-follow-lag
  RESYNCS        snapshots it loaded instead of records
  RECONNECTS     streams that ended and were opened again

Exit status (the worst condition found wins, in this order: 3, 4, 5):
  0  healthy: every volume holds its term with W replicas answering and no
     replica lacks more than --max-lag records; every follower is connected
     and within --max-lag records of its source
  1  the node cannot be asked (or, with --replicas, no replica answered)
  2  usage error
  3  a volume is fenced: another node took it with a newer term
  4  a volume is below quorum: fewer than W replicas answering; close,
     fsync and rename wait and fail with EIO
  5  a replica lacks more than --max-lag records (a dead replica does once
     that many records were written without it), or a follower is more
     than --max-lag records behind its source or connected to no replica`,
		Example: `  spoolfs status
  spoolfs status --admin 10.0.0.7:7480 -o json
  spoolfs status --max-lag 1000 || echo "unhealthy: exit $?"
  spoolfs status --replicas a:7400,b:7400,c:7400`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if c.Flags().Changed("admin") && replicas != "" {
				return usageErr(c, errors.New("--admin and --replicas exclude each other"))
			}
			switch output {
			case "json":
				asJSON = true
			case "table":
				if asJSON && c.Flags().Changed("output") {
					return usageErr(c, errors.New("--json and -o table exclude each other"))
				}
			default:
				return usageErr(c, fmt.Errorf("-o %q: want table or json", output))
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			if replicas != "" {
				m, err := tf.config().Files().Material(nil)
				if err != nil {
					return usageErr(c, err)
				}
				return printReplicas(ctx, config.SplitReplicas(replicas), m.ClientCreds(), asJSON)
			}
			ns, err := admin.FetchStatus(ctx, adminAddr)
			if err != nil {
				return &exitError{code: admin.ExitUnreachable, err: err}
			}
			if asJSON {
				err = printJSON(ns)
			} else {
				err = admin.PrintStatus(os.Stdout, ns)
			}
			if err != nil {
				return err
			}
			if code, why := admin.Verdict(ns, maxLag); code != admin.ExitHealthy {
				return &exitError{code: code, err: errors.New(why)}
			}
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&adminAddr, "admin", defaultAdmin, "the node's admin endpoint host:port")
	fl.StringVar(&replicas, "replicas", "", "ask these replicas (host:port,...) directly")
	fl.StringVarP(&output, "output", "o", "table", "output format: table or json")
	fl.BoolVar(&asJSON, "json", false, "print JSON instead of a table (-o json)")
	fl.Uint64Var(&maxLag, "max-lag", 100000, "exit 5 when a replica, or a follower, lacks more records than this (0: no bound)")
	fl.DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for answers")
	addTLSFlags(fl, &tf)
	return c
}

func printReplicas(ctx context.Context, addrs []string, creds credentials.TransportCredentials, asJSON bool) error {
	rs := node.QueryReplicas(ctx, addrs, creds)
	if asJSON {
		return printJSON(rs)
	}
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	_, _ = tw.Write([]byte("REPLICA\tVOLUME\tACCEPTED TERM\tLAST TERM\tLSN\tINODES\tBYTES\tCOMMITS\tHOLDER\n"))
	failed := 0
	for _, r := range rs {
		admin.PrintReplicaRows(tw, r)
		if r.Err != "" {
			failed++
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if failed == len(rs) {
		return &exitError{code: admin.ExitUnreachable}
	}
	return nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
