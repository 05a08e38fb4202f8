package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/spoolfs/spoolfs/internal/config"
	pb "github.com/spoolfs/spoolfs/proto"
	"github.com/spoolfs/spoolfs/replication"
)

func init() { extraCommands = append(extraCommands, newDumpCmd, newRestoreCmd) }

func newDumpCmd() *cobra.Command {
	var replica, out string
	var tf tlsFlags
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "dump VOLUME --replica ADDR [> FILE]",
		Short: "Write a volume as one replica holds it to a file (a backup for spoolfs restore)",
		Long: `Write VOLUME as the replica at ADDR holds it — every file, directory, link
and attribute, at that replica's last fsynced record — to standard output (or
--out FILE): the stream of snapshot chunks the replica's Fetch sends, each
preceded by its length. The mount keeps serving: the replica's batches wait
while it sends, and the other two keep the quorum. Pick a replica with
LAG 0 in spoolfs status for the newest state. The summary goes to stderr.`,
		Example: `  spoolfs dump mx1-spool --replica r1:7400 > mx1-spool.dump
  spoolfs dump mx1-spool --replica r1:7400 --out /backup/mx1-spool.dump \
      --tls-ca /etc/spoolfs/tls/ca.crt --tls-cert /etc/spoolfs/tls/mx1.crt --tls-key /etc/spoolfs/tls/mx1.key`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErr(c, fmt.Errorf("want VOLUME, got %d arguments", len(args)))
			}
			if replica == "" {
				return usageErr(c, fmt.Errorf("--replica ADDR is required"))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			m, err := tf.config().Files().Material(nil)
			if err != nil {
				return usageErr(c, err)
			}
			creds := m.ClientCreds()
			if creds == nil {
				creds = insecure.NewCredentials()
			}
			conn, err := grpc.NewClient(replica, append(replication.DialOptions(), grpc.WithTransportCredentials(creds))...)
			if err != nil {
				return usageErr(c, err)
			}
			defer conn.Close()
			w, finish, err := dumpOutput(out)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			info, err := replication.WriteDump(ctx, pb.NewReplicaClient(conn), args[0], w)
			if err = finish(err); err != nil {
				return &exitError{code: 1, err: fmt.Errorf("%w (is `spoolfs replica` running at %s?)", err, replica)}
			}
			fmt.Fprintf(c.ErrOrStderr(), "dumped %s from %s: lsn %d of term %d, %d inodes, %d bytes of file data\n",
				info.Volume, replica, info.LSN, info.LastTerm, info.Inodes, info.Bytes)
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&replica, "replica", "", "host:port of the replica to read the volume from")
	fl.StringVarP(&out, "out", "O", "", "write to FILE (written whole, then renamed into place) instead of standard output")
	fl.DurationVar(&timeout, "timeout", 10*time.Minute, "how long the dump may take")
	addTLSFlags(fl, &tf)
	return c
}

// dumpOutput is standard output, or a temporary file beside path that
// finish fsyncs and renames to path once the dump is whole.
func dumpOutput(path string) (io.Writer, func(error) error, error) {
	if path == "" {
		return os.Stdout, func(err error) error { return err }, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".dump-*")
	if err != nil {
		return nil, nil, err
	}
	finish := func(err error) error {
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), path)
		}
		if err != nil {
			_ = os.Remove(f.Name())
		}
		return err
	}
	return f, finish, nil
}

func newRestoreCmd() *cobra.Command {
	var replicas, in, nodeID string
	var w int
	var tf tlsFlags
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "restore VOLUME --replicas A,B,C [< FILE]",
		Short: "Make a dump (spoolfs dump) the volume's state on its replicas",
		Long: `Read a dump of VOLUME from standard input (or --in FILE) and make it the
volume's state on its replicas: take a new term from a quorum of them, as a
primary does, and install the dump under it on every replica that granted
it, until --w hold it. The next primary mounts the volume as it was in the
dump; everything written after the dump is gone. A primary serving the
volume would be fenced: stop it first (systemctl stop spoolfs-mount@VOLUME,
or spoolfs umount). Replicas that were down get the restored state from the
next primary. The dump's volume name must be VOLUME.`,
		Example: `  spoolfs restore mx1-spool --replicas r1:7400,r2:7400,r3:7400 < mx1-spool.dump
  spoolfs restore mx1-spool --replicas r1:7400,r2:7400,r3:7400 --in /backup/mx1-spool.dump`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErr(c, fmt.Errorf("want VOLUME, got %d arguments", len(args)))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			v := config.Volume{Name: args[0], MountPoint: "/", Replicas: config.SplitReplicas(replicas), W: w}
			cfg := config.Node{NodeID: nodeID, Volumes: []config.Volume{v}, TLS: tf.config()}
			if err := cfg.Validate(); err != nil { // with --tls-*: the node id is the certificate's
				return usageErr(c, flagNames(err))
			}
			m, err := cfg.TLS.Files().Material(nil)
			if err != nil {
				return usageErr(c, err)
			}
			r := io.Reader(os.Stdin)
			if in != "" {
				f, err := os.Open(in)
				if err != nil {
					return &exitError{code: 1, err: err}
				}
				defer f.Close()
				r = f
			}
			snap, info, err := replication.ReadDump(r)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if info.Volume != args[0] {
				return &exitError{code: 1, err: fmt.Errorf("the dump is of volume %q, not %q", info.Volume, args[0])}
			}
			log, err := newLogger()
			if err != nil {
				return usageErr(c, err)
			}
			pc := replication.PrimaryConfig{Volume: args[0], NodeID: cfg.NodeID, Replicas: cfg.Volumes[0].Replicas,
				W: cfg.Volumes[0].W, AcquireTimeout: timeout, Creds: m.ClientCreds(), Log: log}
			term, err := replication.Restore(context.Background(), pc, snap)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintf(c.ErrOrStderr(), "restored %s under term %d: %d inodes, %d bytes of file data (dumped at lsn %d of term %d)\n",
				args[0], term, info.Inodes, info.Bytes, info.LSN, info.LastTerm)
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&replicas, "replicas", "", "the volume's replicas host:port,host:port,host:port")
	fl.StringVarP(&in, "in", "I", "", "read the dump from FILE instead of standard input")
	fl.IntVar(&w, "w", 0, "replicas that must hold the restored state (default: a majority, 2 of 3)")
	fl.StringVar(&nodeID, "node-id", "", "the id the term is taken under (default: the host name; with --tls-*: the certificate's)")
	fl.DurationVar(&timeout, "timeout", 5*time.Minute, "how long taking the term and installing may take")
	addTLSFlags(fl, &tf)
	return c
}
