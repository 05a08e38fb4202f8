package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestReplicaFollowSettings: watch_buffer (0 is "no Watch", unset the
// default) and allow_follow in the file, --allow-follow on the command
// line, and their errors naming the field.
func TestReplicaFollowSettings(t *testing.T) {
	c, err := Parse([]byte("node_id: r1\nlisten: 127.0.0.1:7400\ndata_dir: /tmp/d\nwatch_buffer: 0\nallow_follow:\n  mail: [mx2, mx3]\n  queue: mx4\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.WatchBuffer == nil || *c.WatchBuffer != 0 {
		t.Errorf("watch_buffer: 0 read as %v, want set to 0", c.WatchBuffer)
	}
	want := map[string][]string{"mail": {"mx2", "mx3"}, "queue": {"mx4"}}
	if got := c.FollowAllowlist(); !reflect.DeepEqual(got, want) {
		t.Errorf("allow_follow: %v, want %v", got, want)
	}
	c, err = Parse([]byte("node_id: r1\nlisten: 127.0.0.1:7400\ndata_dir: /tmp/d\n"))
	if err != nil || c.WatchBuffer != nil || c.FollowAllowlist() != nil {
		t.Fatalf("no follow settings: %v, %v, %v", err, c.WatchBuffer, c.FollowAllowlist())
	}
	for _, bad := range []struct{ yaml, want string }{
		{"allow_follow:\n  mail: []\n", "allow_follow.mail:"},
		{"allow_follow:\n  ../x: [mx2]\n", "allow_follow:"},
	} {
		_, err := Parse([]byte("node_id: r1\nlisten: 127.0.0.1:7400\ndata_dir: /tmp/d\n" + bad.yaml))
		if err == nil || !strings.HasPrefix(err.Error(), bad.want) {
			t.Errorf("%q: %v, want an error starting %q", bad.yaml, err, bad.want)
		}
	}
	got, err := ParseAllowFollow([]string{"mail=mx2,mx3", "queue=mx4"})
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("--allow-follow: %v, %v; want %v", got, err, want)
	}
	if _, err := ParseAllowFollow([]string{"mail"}); err == nil {
		t.Error("--allow-follow mail (no ids) accepted")
	}
}
