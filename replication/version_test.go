package replication

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/spoolfs/spoolfs/proto"
)

// withVersions makes a replica play a release that serves versions r.
func withVersions(r versionRange) ReplicaOption {
	return func(s *ReplicaServer) { s.versions = r }
}

// versionInfo is the ErrorInfo of a refusal by version, or fails the test.
func versionInfo(t *testing.T, what string, err error) *errdetails.ErrorInfo {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != codes.FailedPrecondition {
		t.Fatalf("%s: got %v, want FailedPrecondition", what, err)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == errorDomain && info.Reason == reasonProtocolVersion {
			return info
		}
	}
	t.Fatalf("%s: %v carries no ErrorInfo %s", what, err, reasonProtocolVersion)
	return nil
}

// TestProtocolVersionReplicaRefuses: a replica refuses every conversation
// that opens with a version it does not serve — a too-new primary's —
// with FailedPrecondition and ErrorInfo PROTOCOL_VERSION, and serves a
// peer older than the field (version 0) as version 1, answering in it.
func TestProtocolVersionReplicaRefuses(t *testing.T) {
	c := makeCluster(t, 1)
	cl := c.rawClient(0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	_, err := cl.Acquire(ctx, &pb.AcquireRequest{Volume: "v", Term: 1, NodeId: "n", ProtocolVersion: 3})
	info := versionInfo(t, "acquire v3", err)
	if info.Metadata["peer"] != "3" || info.Metadata["min"] != "1" || info.Metadata["max"] != "2" {
		t.Fatalf("acquire v3: metadata %v, want peer 3, min 1, max 2", info.Metadata)
	}
	if !strings.Contains(status.Convert(err).Message(), "upgrade the older side") {
		t.Fatalf("acquire v3: message %q does not say what to do", status.Convert(err).Message())
	}
	if c.status(0, "v").AcceptedTerm != 0 {
		t.Fatal("a refused acquire changed the term")
	}

	resp, err := cl.Acquire(ctx, &pb.AcquireRequest{Volume: "v", Term: 1, NodeId: "n"})
	if err != nil || !resp.Granted || resp.ProtocolVersion != 1 {
		t.Fatalf("acquire without a version: %v, %v; want granted, answered in version 1", resp, err)
	}

	ship, err := cl.Ship(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ship.Send(&pb.ShipRequest{Header: &pb.ShipHeader{Volume: "v", Term: 1, NodeId: "n", ProtocolVersion: 3}}); err != nil {
		t.Fatal(err)
	}
	_, err = ship.Recv()
	versionInfo(t, "ship v3", err)

	fetch, err := cl.Fetch(ctx, &pb.FetchRequest{Volume: "v", ProtocolVersion: 3})
	if err != nil {
		t.Fatal(err)
	}
	_, err = fetch.Recv()
	versionInfo(t, "fetch v3", err)

	inst, err := cl.Install(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hdr := &pb.SnapshotHeader{Volume: "v", Term: 1, NodeId: "n", NextIno: 2, ProtocolVersion: 3}
	if err := inst.Send(&pb.SnapshotChunk{Header: hdr}); err != nil {
		t.Fatal(err)
	}
	_, err = inst.CloseAndRecv()
	versionInfo(t, "install v3", err)
}

// TestProtocolVersionSkew runs real primaries against real replicas of
// other releases: a primary too new or too old for its replicas fails at
// once with ErrProtocolVersion naming the replicas' answer — this build
// (version 2, partial data records) against replicas of version 1, which
// would reject its partial records, is refused before it ships any — and
// replicas of this build (serving 1 and 2) serve a version-1 primary, as
// a rolling upgrade that upgrades the replicas first needs.
func TestProtocolVersionSkew(t *testing.T) {
	open := func(c *testCluster, r versionRange) error {
		cfg := c.primaryConfig("v")
		cfg.versions = r
		p, _, err := OpenPrimary(context.Background(), cfg)
		if err == nil {
			_ = p.Close()
		}
		return err
	}
	mustRefuse := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrProtocolVersion) || !strings.Contains(err.Error(), "protocol version") {
			t.Fatalf("%s: got %v, want ErrProtocolVersion naming the versions", what, err)
		}
		t.Logf("%s: %v", what, err)
	}

	old := makeCluster(t, 3, withVersions(versionRange{min: 1, max: 1}))
	start := time.Now()
	mustRefuse("primary of version 2 against replicas of 1", open(old, versionRange{}))
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("a refusal by version took %v: it must not wait for the acquire timeout", d)
	}
	mustRefuse("primary of version 1 against replicas of 2 only", open(makeCluster(t, 3, withVersions(versionRange{min: 2, max: 2})), versionRange{min: 1, max: 1}))

	next := makeCluster(t, 3) // this build: versions 1 and 2
	cfg := next.primaryConfig("v")
	cfg.versions = versionRange{min: 1, max: 1}
	p, m := next.openPrimary(cfg)
	_, lsn := m.writeFile(RootIno, "msg", []byte("mixed versions"))
	mustWait(t, p, lsn, 20*time.Second)
	next.waitForLSN("v", lsn)
}

// TestProtocolVersionPrimaryRefuses: a primary refuses a replica that
// answers in a version it does not speak (a replica older than the field
// answers 0, which is 1), by the same error a replica gives.
func TestProtocolVersionPrimaryRefuses(t *testing.T) {
	err := versionRange{min: 2, max: 2}.check(0, "replica r1:7400")
	info := versionInfo(t, "answer without a version", err)
	if info.Metadata["peer"] != "1" || !errors.Is(err, ErrProtocolVersion) || !isVersionRefusal(err) {
		t.Fatalf("got %v (metadata %v), want peer 1 refused as ErrProtocolVersion", err, info.Metadata)
	}
	if err := (versionRange{}).check(0, "replica r1:7400"); err != nil {
		t.Fatalf("this build refused a peer older than the field: %v", err)
	}
}
