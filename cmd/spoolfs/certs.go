package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spoolfs/spoolfs/internal/tlsid"
)

func init() { extraCommands = append(extraCommands, newCertsCmd) }

// maxDays bounds --days (about 100 years; a time.Duration holds ~292).
const maxDays = 36500

func newCertsCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "certs",
		Short: "Make the mTLS material nodes use between them: a CA and node certificates",
		Long: `Nodes talk gRPC over mutual TLS: each presents a certificate signed by the
cluster's CA, whose CN is its node id. "certs ca" makes the CA once; "certs
node" signs a certificate for each node with it. Keys are P-256, written
0600; existing files are never overwritten. To rotate a node's pair, write
the new files over the old (rename, or a Kubernetes Secret update): a running
node takes them for its next connections without a restart and logs "tls
material reloaded" (docs/operations.md, "mTLS between nodes").`,
		Example: `  spoolfs certs ca --dir /etc/spoolfs/pki
  spoolfs certs node --ca /etc/spoolfs/pki --id replica-1 --host 10.0.0.7,replica-1.example`,
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErr(c, fmt.Errorf("unknown command %q: want ca or node", args[0]))
			}
			return c.Help()
		},
	}
	c.AddCommand(newCertsCACmd(), newCertsNodeCmd())
	return c
}

func newCertsCACmd() *cobra.Command {
	var dir, name string
	var days int
	c := &cobra.Command{
		Use:   "ca --dir DIR",
		Short: "Make the cluster's CA: DIR/ca.crt and DIR/ca.key",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if dir == "" {
				return usageErr(c, errors.New("want --dir DIR"))
			}
			if err := checkDays(days); err != nil {
				return usageErr(c, err)
			}
			if err := tlsid.CreateCA(dir, name, time.Duration(days)*24*time.Hour); err != nil {
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintf(c.OutOrStdout(), "wrote %s and %s (private: keep it off the nodes)\nnext, for each node: %s node --ca %s --id NODE --host ADDR\n",
				certsPath(dir, tlsid.CACertFile), certsPath(dir, tlsid.CAKeyFile), c.Parent().CommandPath(), certsPath(dir))
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&dir, "dir", "", "directory to write ca.crt and ca.key in (created 0700 if missing)")
	fl.StringVar(&name, "name", "spoolfs CA", "the CA certificate's common name")
	fl.IntVar(&days, "days", 3650, "validity in days")
	return c
}

func newCertsNodeCmd() *cobra.Command {
	var caDir, id, out string
	var hosts []string
	var days int
	c := &cobra.Command{
		Use:   "node --ca DIR --id NODEID --host H[,H...]",
		Short: "Sign a node's certificate with the CA: OUT/NODEID.crt and OUT/NODEID.key",
		Long: `Sign a certificate for node NODEID with the CA in DIR. Its CN is NODEID
(the identity peers see) and its SANs are the --host values: every IP
address and DNS name peers dial this node by. It is good for serving and
for dialing, since every node does both, and never outlives the CA.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkNodeFlags(caDir, id, hosts, days); err != nil {
				return usageErr(c, err)
			}
			if out == "" {
				out = caDir
			}
			if err := tlsid.IssueNodeCert(caDir, out, id, hosts, time.Duration(days)*24*time.Hour); err != nil {
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintf(c.OutOrStdout(), "wrote %s and %s for node %s\nrun the node with: --tls-ca %s --tls-cert %s --tls-key %s\n",
				certsPath(out, id+".crt"), certsPath(out, id+".key"), id,
				certsPath(caDir, tlsid.CACertFile), certsPath(out, id+".crt"), certsPath(out, id+".key"))
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&caDir, "ca", "", "the CA's directory (ca.crt, ca.key)")
	fl.StringVar(&id, "id", "", "the node id: the certificate's CN")
	fl.StringSliceVar(&hosts, "host", nil, "IP addresses and DNS names peers dial this node by (repeat or comma-separate)")
	fl.StringVar(&out, "out", "", "directory to write NODEID.crt and NODEID.key in (default: --ca's)")
	fl.IntVar(&days, "days", 365, "validity in days (cut at the CA's expiry)")
	return c
}

// checkNodeFlags names the flag at fault.
func checkNodeFlags(caDir, id string, hosts []string, days int) error {
	var missing []string
	for _, f := range []struct {
		unset bool
		flag  string
	}{{caDir == "", "--ca DIR"}, {id == "", "--id NODEID"}, {len(hosts) == 0, "--host H[,H...]"}} {
		if f.unset {
			missing = append(missing, f.flag)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("want %s", strings.Join(missing, " and "))
	}
	if err := tlsid.CheckNodeID(id); err != nil {
		return fmt.Errorf("--id: %w", err)
	}
	if err := tlsid.CheckHosts(hosts); err != nil {
		return fmt.Errorf("--host: %w", err)
	}
	return checkDays(days)
}

func checkDays(days int) error {
	if days < 1 || days > maxDays {
		return fmt.Errorf("--days %d: want 1 to %d", days, maxDays)
	}
	return nil
}

// certsPath joins elem and makes the path absolute when it can, for flags a
// user copies to another directory.
func certsPath(elem ...string) string {
	p := filepath.Join(elem...)
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
