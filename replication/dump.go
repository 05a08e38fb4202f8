package replication

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protodelim"

	pb "github.com/spoolfs/spoolfs/proto"
)

// Backups (`spoolfs dump`, `spoolfs restore`; docs/operations.md, "Back
// up and restore a volume"). A dump is the stream of SnapshotChunk
// messages a replica's Fetch sends, each preceded by its length as a
// varint (protodelim): the volume whole, as one replica holds it, in the
// same form an install takes, so a restore is an install.

// DumpInfo says what a dump holds.
type DumpInfo struct {
	Volume   string
	LastTerm uint64 // the term of the record at LSN
	LSN      uint64
	Inodes   uint64
	Bytes    uint64 // file contents, holes left out
}

func dumpInfo(h *pb.SnapshotHeader) DumpInfo {
	return DumpInfo{Volume: h.Volume, LastTerm: h.LastTerm, LSN: h.Lsn, Inodes: h.Inodes, Bytes: h.Bytes}
}

// WriteDump writes volume as the replica behind c holds it to w. The
// replica holds the volume while it sends it: a primary's batches to it
// wait meanwhile (the other replicas keep the primary's quorum).
func WriteDump(ctx context.Context, c pb.ReplicaClient, volume string, w io.Writer) (DumpInfo, error) {
	stream, err := c.Fetch(ctx, &pb.FetchRequest{Volume: volume, ProtocolVersion: ProtocolVersion})
	if err != nil {
		return DumpInfo{}, fmt.Errorf("dump %q: %w", volume, err)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var info DumpInfo
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return info, fmt.Errorf("dump %q: %w", volume, err)
		}
		if chunk.Header != nil {
			info = dumpInfo(chunk.Header)
		}
		if _, err := protodelim.MarshalTo(bw, chunk); err != nil {
			return info, fmt.Errorf("dump %q: write: %w", volume, err)
		}
	}
	if info.Volume == "" {
		return info, fmt.Errorf("dump %q: the replica sent no header", volume)
	}
	if err := bw.Flush(); err != nil {
		return info, fmt.Errorf("dump %q: write: %w", volume, err)
	}
	return info, nil
}

// ReadDump reads a dump and checks it as a replica checks an install.
func ReadDump(r io.Reader) (*Snapshot, DumpInfo, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	asm := &snapAssembler{lim: Limits{MaxFileSize: 1 << 40}.withDefaults()}
	opts := protodelim.UnmarshalOptions{MaxSize: maxMsgSize}
	for {
		chunk := &pb.SnapshotChunk{}
		err := opts.UnmarshalFrom(br, chunk)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, DumpInfo{}, fmt.Errorf("read dump: %w", err)
		}
		if err := asm.add(chunk); err != nil {
			return nil, DumpInfo{}, fmt.Errorf("read dump: %w", err)
		}
	}
	hdr, snap, err := asm.finish()
	if err != nil {
		return nil, DumpInfo{}, fmt.Errorf("read dump: %w", err)
	}
	if snap, err = checkSnapshot(snap, asm.lim); err != nil {
		return nil, DumpInfo{}, fmt.Errorf("read dump: %w", err)
	}
	return snap, dumpInfo(hdr), nil
}

// Restore makes snap the state of cfg.Volume on its replicas: it takes a
// new term from W of them, as a primary does, and installs snap under that
// term, with that term as its last term, on every replica that granted it,
// until W hold it. Its position is then ahead of every state the volume
// had, so the next primary recovers it; W granting and W holding
// replicas always share one. A primary serving the volume meanwhile is
// fenced: stop it first. Restore returns the term it took.
func Restore(ctx context.Context, cfg PrimaryConfig, snap *Snapshot) (uint64, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return 0, err
	}
	conns, err := dialAll(cfg)
	if err != nil {
		return 0, err
	}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, cfg.AcquireTimeout)
	defer cancel()
	r := &recovery{cfg: cfg, log: cfg.Log.With(zap.String("volume", cfg.Volume))}
	for _, c := range conns {
		r.clients = append(r.clients, pb.NewReplicaClient(c))
	}
	term, answers, err := r.acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("restore %q: %w", cfg.Volume, err)
	}
	if _, err := r.spread(ctx, term, term, snap, answers); err != nil {
		return 0, fmt.Errorf("restore %q: %w", cfg.Volume, err)
	}
	r.log.Info("volume restored", zap.Uint64("term", term), zap.Uint64("lsn", snap.LSN), zap.Int("inodes", len(snap.Inodes)))
	return term, nil
}
