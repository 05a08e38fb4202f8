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
	var adminAddr, replicas string
	var asJSON bool
	var tf tlsFlags
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "status [--admin ADDR | --replicas A,B,C]",
		Short: "Print volumes, roles, terms, lsns and per-replica lag as a table",
		Long: `Ask a node's admin endpoint (--admin, default ` + defaultAdmin + `, where
spoolfs run --embedded serves it) for what it serves: each volume it is the
primary of (term, last and durable lsn, and per replica: connected, acked
lsn, lag, resyncs, last error), and each replica server it runs (per volume:
accepted term, holder, last term, lsn, inodes, bytes, commits).
With --replicas, ask the replicas themselves (their Status RPC) instead.

Exit status: 0; 1 when the node or every replica cannot be asked; 2 on a
usage error; 3 when a volume of the node is fenced (another node took it
with a newer term; it answers EROFS).`,
		Example: `  spoolfs status
  spoolfs status --admin 10.0.0.7:7480 --json
  spoolfs status --replicas a:7400,b:7400,c:7400`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if c.Flags().Changed("admin") && replicas != "" {
				return usageErr(c, errors.New("--admin and --replicas exclude each other"))
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
				return &exitError{code: 1, err: err}
			}
			if asJSON {
				err = printJSON(ns)
			} else {
				err = admin.PrintStatus(os.Stdout, ns)
			}
			if err == nil {
				err = fencedExit(ns)
			}
			return err
		},
	}
	fl := c.Flags()
	fl.StringVar(&adminAddr, "admin", defaultAdmin, "the node's admin endpoint host:port")
	fl.StringVar(&replicas, "replicas", "", "ask these replicas (host:port,...) directly")
	fl.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	fl.DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for answers")
	addTLSFlags(fl, &tf)
	return c
}

// fencedExit is exit status 3 when a volume of the node was fenced (a
// newer term took it; it answers EROFS): a script or probe sees a deposed
// primary without reading the table.
func fencedExit(ns admin.NodeStatus) error {
	for _, v := range ns.Volumes {
		if v.Role == "fenced" {
			return &exitError{code: 3, err: fmt.Errorf("volume %s is fenced: another node holds a newer term", v.Volume)}
		}
	}
	return nil
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
		return &exitError{code: 1}
	}
	return nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
