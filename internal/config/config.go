package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spoolfs/spoolfs/internal/tlsid"
)

// Node is a node's configuration file (`spoolfs run -c node.yaml`):
// what the node serves as a replica, and which volumes it mounts as their
// primary. docs/configuration.md describes every field.
type Node struct {
	NodeID  string   `yaml:"node_id"`  // default: the host name
	Listen  string   `yaml:"listen"`   // replica service host:port; empty: not a replica
	DataDir string   `yaml:"data_dir"` // the replica's volumes; required with listen
	Admin   string   `yaml:"admin"`    // admin HTTP host:port (/metrics...); empty: off
	Volumes []Volume `yaml:"volumes"`  // volumes this node mounts: as primary, or as a follower
	TLS     TLS      `yaml:"tls"`      // mTLS between nodes; empty: plaintext
	// WatchBuffer bounds, per volume, the replica's ring of recent records
	// that followers' Watch streams are served from (unset: 64 MiB; 0: no
	// Watch). With listen only.
	WatchBuffer *ByteSize `yaml:"watch_buffer"`
	// AllowFollow lists, per volume, the node ids (certificate names) that
	// may follow it from this replica (Watch, Fetch) besides its current
	// primary; a volume not listed may be followed by any node the CA
	// authenticates. With listen only.
	AllowFollow map[string]List `yaml:"allow_follow"`
}

// Volume is one volume the node mounts: as its primary, or as a follower
// (Follow).
type Volume struct {
	Name       string `yaml:"name"`
	MountPoint string `yaml:"mount_point"`
	Replicas   List   `yaml:"replicas"` // host:port, 3 in production
	// W is the write quorum (0: a majority: 2 of 3).
	W              int           `yaml:"w"`
	FlushTimeout   time.Duration `yaml:"flush_timeout"`   // 0: 30s
	AcquireTimeout time.Duration `yaml:"acquire_timeout"` // 0: 30s
	ReadyWithin    time.Duration `yaml:"ready_within"`    // 0: 3s; /readyz is 503 unless W replicas answered within it
	LogBytes       ByteSize      `yaml:"log_bytes"`       // 0: 64 MiB
	Options        List          `yaml:"options"`         // mount options, as -o
	Capacity       ByteSize      `yaml:"capacity"`        // 0: from the machine
	MaxInodes      uint64        `yaml:"max_inodes"`      // 0: one per 8 KiB of capacity
	RootMode       string        `yaml:"root_mode"`       // octal, a new volume's root; default 0755
	RootOwner      string        `yaml:"root_owner"`      // UID:GID; default: this process's
	AccessLog      bool          `yaml:"access_log"`
	Watchdog       time.Duration `yaml:"watchdog"` // 0: 5s; how long the actor may be stuck before its stacks are logged
	// Follow mounts the volume read-only as a follower of its primary
	// (`options: [ro]` means the same); `spoolfs promote` makes it the
	// primary, with the fields above (w, log_bytes...) from then on.
	Follow bool `yaml:"follow"`
	// MaxFollowLag: a follower is ready (/readyz) while connected and
	// behind its source by less than this (0: admin.DefaultMaxFollowLag,
	// 5s).
	MaxFollowLag time.Duration `yaml:"max_follow_lag"`
	// EntryTimeout and AttrTimeout bound the kernel's caches (0: from
	// options, else PrimaryCacheTimeout on a primary, the only writer, and
	// FollowerCacheTimeout on a follower).
	EntryTimeout time.Duration `yaml:"entry_timeout"`
	AttrTimeout  time.Duration `yaml:"attr_timeout"`
}

// Load reads and checks a node configuration file. Unknown fields
// and bad values are errors naming the field (`volumes[0].w: ...`).
func Load(path string) (*Node, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes a YAML node configuration strictly and validates it.
func Parse(b []byte) (*Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, errors.New("empty: want a mapping with node_id, listen, data_dir, admin, volumes")
	}
	c := &Node{}
	if err := decodeStrict(b, &doc, c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks the fields and fills the defaults (node_id from the
// host name). Errors name the field.
func (c *Node) Validate() error {
	if err := c.validateTLS(); err != nil {
		return err
	}
	if c.NodeID == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("node_id: not set and no host name: %w", err)
		}
		c.NodeID = host
	}
	if err := checkAddr("listen", c.Listen); err != nil {
		return err
	}
	if err := checkAddr("admin", c.Admin); err != nil {
		return err
	}
	switch {
	case c.Listen != "" && c.DataDir == "":
		return errors.New("data_dir: required when listen is set (where the replica keeps its volumes)")
	case c.Listen == "" && c.DataDir != "":
		return errors.New("listen: required when data_dir is set (the address the replica serves on)")
	case c.Listen == "" && len(c.Volumes) == 0:
		return errors.New("nothing to do: set listen and data_dir (a replica), or volumes (mounts), or both")
	}
	if err := c.validateFollowing(); err != nil {
		return err
	}
	return c.validateVolumes()
}

// validateFollowing checks the replica's follower settings.
func (c *Node) validateFollowing() error {
	if c.Listen == "" && (c.WatchBuffer != nil || len(c.AllowFollow) > 0) {
		return errors.New("watch_buffer, allow_follow: replica settings, only with listen and data_dir")
	}
	for vol, ids := range c.AllowFollow {
		if err := ValidateVolumeName(vol); err != nil {
			return fmt.Errorf("allow_follow: %w", err)
		}
		if err := CheckFollowIDs(ids); err != nil {
			return fmt.Errorf("allow_follow.%s: %w", vol, err)
		}
	}
	return nil
}

// FollowAllowlist is AllowFollow as ReplicaOptions.FollowAllow takes it
// (nil: no lists).
func (c *Node) FollowAllowlist() map[string][]string {
	if len(c.AllowFollow) == 0 {
		return nil
	}
	out := make(map[string][]string, len(c.AllowFollow))
	for vol, ids := range c.AllowFollow {
		out[vol] = ids
	}
	return out
}

// ParseAllowFollow reads the command line's --allow-follow VOLUME=ID1,ID2
// values (repeatable) into per-volume lists.
func ParseAllowFollow(vals []string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, v := range vals {
		vol, ids, ok := strings.Cut(v, "=")
		if !ok {
			return nil, fmt.Errorf("--allow-follow %q: want VOLUME=ID1,ID2", v)
		}
		if err := ValidateVolumeName(vol); err != nil {
			return nil, fmt.Errorf("--allow-follow %q: %w", v, err)
		}
		list := SplitReplicas(ids)
		if err := CheckFollowIDs(list); err != nil {
			return nil, fmt.Errorf("--allow-follow %q: %w", v, err)
		}
		out[vol] = append(out[vol], list...)
	}
	return out, nil
}

// CheckFollowIDs checks the node ids of a follow allowlist (at least one,
// each a valid node id).
func CheckFollowIDs(ids []string) error {
	if len(ids) == 0 {
		return errors.New("no node ids: list the nodes that may follow the volume")
	}
	for _, id := range ids {
		if err := tlsid.CheckNodeID(id); err != nil {
			return err
		}
	}
	return nil
}

func (c *Node) validateVolumes() error {
	names, mounts := map[string]bool{}, map[string]bool{}
	for i := range c.Volumes {
		v := &c.Volumes[i]
		field := fmt.Sprintf("volumes[%d]", i)
		if err := v.validate(field); err != nil {
			return err
		}
		if names[v.Name] {
			return fmt.Errorf("%s.name: volume %q listed twice", field, v.Name)
		}
		if mounts[v.MountPoint] {
			return fmt.Errorf("%s.mount_point: %s used by another volume", field, v.MountPoint)
		}
		names[v.Name], mounts[v.MountPoint] = true, true
	}
	return nil
}

func (v *Volume) validate(field string) error {
	if err := ValidateVolumeName(v.Name); err != nil {
		return fmt.Errorf("%s.name: %w", field, err)
	}
	if v.MountPoint == "" || !filepath.IsAbs(v.MountPoint) {
		return fmt.Errorf("%s.mount_point: want an absolute path, got %q", field, v.MountPoint)
	}
	v.MountPoint = filepath.Clean(v.MountPoint)
	if err := checkReplicas(field+".replicas", v.Replicas); err != nil {
		return err
	}
	if err := CheckW(field+".w", v.W, len(v.Replicas)); err != nil {
		return err
	}
	switch {
	case v.FlushTimeout < 0:
		return fmt.Errorf("%s.flush_timeout: must not be negative", field)
	case v.AcquireTimeout < 0:
		return fmt.Errorf("%s.acquire_timeout: must not be negative", field)
	case v.ReadyWithin < 0:
		return fmt.Errorf("%s.ready_within: must not be negative", field)
	case v.LogBytes != 0 && v.LogBytes < 1<<20:
		return fmt.Errorf("%s.log_bytes: %d is below the minimum of 1MiB", field, v.LogBytes)
	case v.EntryTimeout < 0 || v.AttrTimeout < 0:
		return fmt.Errorf("%s.entry_timeout, attr_timeout: must not be negative", field)
	case v.MaxFollowLag < 0:
		return fmt.Errorf("%s.max_follow_lag: must not be negative", field)
	}
	o, err := v.MountOptions(field)
	if err == nil && v.MaxFollowLag != 0 && !o.Follower {
		err = fmt.Errorf("%s.max_follow_lag: only with follow: true (the bound of a follower's readiness)", field)
	}
	return err
}

// checkAddr checks a host:port, or nothing.
func checkAddr(field, addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %q: want host:port", field, addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%s: %q: bad port %q", field, addr, port)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("%s: %q: bad host %q", field, addr, host)
	}
	return nil
}

func checkReplicas(field string, addrs []string) error {
	if len(addrs) == 0 {
		return fmt.Errorf("%s: required: the host:port of each of the volume's 3 replicas", field)
	}
	seen := map[string]bool{}
	for i, a := range addrs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if a == "" {
			return fmt.Errorf("%s: empty", f)
		}
		if err := checkAddr(f, a); err != nil {
			return err
		}
		if _, port, _ := net.SplitHostPort(a); port == "0" {
			return fmt.Errorf("%s: %q: a replica needs a fixed port", f, a)
		}
		if seen[a] {
			return fmt.Errorf("%s: %s listed twice", f, a)
		}
		seen[a] = true
	}
	if len(addrs) != ReplicaCount {
		return fmt.Errorf("%s: %d given (%s), want %d: a volume's replica set is %d replicas, one per datacenter, so that W=2 survives the loss of one",
			field, len(addrs), strings.Join(addrs, ","), ReplicaCount, ReplicaCount)
	}
	return nil
}

// ReplicaCount is the size of every volume's replica set (DESIGN.md:
// "a replica set of 3 nodes"). Two would lose the quorum with either
// replica; four or more buy nothing the W of 3 does not, and an operator
// who lists them has most likely made a typo.
const ReplicaCount = 3

// CheckW checks a write quorum against the number of replicas: 0 (a
// majority) or a majority up to all of them.
func CheckW(field string, w, replicas int) error {
	low := replicas/2 + 1
	if w == 0 || (w >= low && w <= replicas) {
		return nil
	}
	ok := make([]string, 0, replicas-low+1)
	for i := low; i <= replicas; i++ {
		ok = append(ok, strconv.Itoa(i))
	}
	allowed := strings.Join(ok, " or ")
	if len(ok) > 2 {
		allowed = fmt.Sprintf("between %d and %d", low, replicas)
	}
	return fmt.Errorf("%s: must be %s (a majority of the %d replicas, so two primaries can never both have a quorum), got %d",
		field, allowed, replicas, w)
}

// MountOptions turns the volume's fields into what node.Mount takes; field
// names the volume in errors. `follow: true` or `options: [ro]` make a
// follower (MountOptions.Follower, with the follower's cache timeouts
// unless set).
func (v *Volume) MountOptions(field string) (MountOptions, error) {
	o := DefaultMountOptions()
	o.Replicated()
	o.Volume, o.Dir = v.Name, v.MountPoint
	follower := IsFollower(v.Follow, v.Options)
	if follower {
		o.EntryTimeout, o.AttrTimeout = FollowerCacheTimeout, FollowerCacheTimeout
	}
	for _, s := range v.Options {
		if err := ApplyOptionString(&o, s); err != nil {
			return o, fmt.Errorf("%s.options: %w", field, err)
		}
	}
	if v.EntryTimeout > 0 {
		o.EntryTimeout = v.EntryTimeout
	}
	if v.AttrTimeout > 0 {
		o.AttrTimeout = v.AttrTimeout
	}
	if follower {
		o.Follow()
	}
	if v.FlushTimeout > 0 {
		o.FlushTimeout = v.FlushTimeout
	}
	o.Capacity, o.MaxInodes, o.AccessLog = uint64(v.Capacity), v.MaxInodes, v.AccessLog
	if v.Watchdog > 0 {
		o.Watchdog = v.Watchdog
	}
	mode, err := ParseRootMode(v.RootMode)
	if err != nil {
		return o, fmt.Errorf("%s.root_mode: %w", field, err)
	}
	o.RootMode = mode
	if o.RootUid, o.RootGid, err = ParseOwner(v.RootOwner); err != nil {
		return o, fmt.Errorf("%s.root_owner: %w", field, err)
	}
	return o, nil
}

// ParseRootMode reads octal permissions ("0755"); empty means 0755.
func ParseRootMode(s string) (uint32, error) {
	if s == "" {
		return 0o755, nil
	}
	mode, err := strconv.ParseUint(s, 8, 32)
	if err != nil || mode > 0o7777 {
		return 0, fmt.Errorf("%q: want octal permissions like 0755", s)
	}
	return uint32(mode), nil
}

// ParseOwner reads numeric UID:GID; empty means this process's user.
func ParseOwner(s string) (uint32, uint32, error) {
	if s == "" {
		return uint32(os.Getuid()), uint32(os.Getgid()), nil
	}
	u, g, ok := strings.Cut(s, ":")
	uid, err1 := strconv.ParseUint(u, 10, 32)
	gid, err2 := strconv.ParseUint(g, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%q: want numeric UID:GID", s)
	}
	return uint32(uid), uint32(gid), nil
}

// SplitReplicas reads a comma-separated replica list ("a:1,b:2,c:3").
func SplitReplicas(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// flagOfField maps the fields of a one-volume config to the flags of
// `spoolfs run` and `spoolfs mount` that set them.
var flagOfField = []struct{ field, flag string }{
	{"volumes[0].name", "--volume"}, {"volumes[0].mount_point", "--mount"},
	{"volumes[0].replicas", "--replicas"}, {"volumes[0].w", "--w"},
	{"volumes[0].flush_timeout", "--flush-timeout"}, {"volumes[0].acquire_timeout", "--acquire-timeout"},
	{"volumes[0].ready_within", "--ready-within"},
	{"volumes[0].log_bytes", "--log-bytes"}, {"volumes[0].options", "-o"},
	{"volumes[0].root_mode", "--root-mode"}, {"volumes[0].root_owner", "--root-owner"},
	{"volumes[0].max_follow_lag", "--max-follow-lag"}, {"volumes[0].follow", "--follow"},
	{"volumes[0].entry_timeout", "--entry-timeout"}, {"volumes[0].attr_timeout", "--attr-timeout"},
	{"node_id", "--node-id"}, {"listen", "--listen"}, {"data_dir", "--data"}, {"admin", "--admin"},
	{"tls.cert", "--tls-cert"}, {"tls.key", "--tls-key"}, {"tls.ca", "--tls-ca"},
}

// FlagNames rewrites a validation error of a config built from flags so it
// names the flags (--w) instead of the file's fields (volumes[0].w).
func FlagNames(msg string) string {
	for _, m := range flagOfField {
		if strings.HasPrefix(msg, m.field) {
			return m.flag + msg[len(m.field):]
		}
		msg = strings.ReplaceAll(msg, " "+m.field+" ", " "+m.flag+" ")
	}
	return msg
}

// DefaultNodeID is a node's id when none is given: the host name.
func DefaultNodeID() string {
	if host, err := os.Hostname(); err == nil && host != "" {
		return host
	}
	return "spoolfs"
}
