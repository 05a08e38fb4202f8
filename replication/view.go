package replication

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/tidwall/buntdb"
)

// view is a scratch copy of a volume: reads go to an overlay of changes,
// then to a read-only buntdb transaction. A batch is applied to a view and
// only its change set reaches the database, so a rejected batch changes
// nothing. The view is owned by one goroutine.
type view struct {
	tx    *buntdb.Tx         // read-only; nil for an empty base
	over  map[string]*string // nil value: deleted
	order []string           // keys of over, in first-change order
	// children lists the keys of over under one inode (d:, x:, c: keys),
	// by their prefix (childPrefixLen bytes), so that listing an inode's
	// children does not scan every change of a batch.
	// INVARIANT: every key of over with a child prefix is in
	// children[its prefix] once.
	children map[string][]string
}

// childPrefixLen is the length of childPrefix's keys: "k:<16 hex>:".
const childPrefixLen = 19

func newView(tx *buntdb.Tx) *view {
	return &view{tx: tx, over: make(map[string]*string), children: make(map[string][]string)}
}

// changed lists the keys of over that may start with prefix: those under
// one inode when prefix is a child prefix, else all.
func (v *view) changed(prefix string) []string {
	if len(prefix) == childPrefixLen && prefix[1] == ':' && prefix[childPrefixLen-1] == ':' {
		return v.children[prefix]
	}
	return v.order
}

func (v *view) get(k string) (string, bool) {
	if p, ok := v.over[k]; ok {
		if p == nil {
			return "", false
		}
		return *p, true
	}
	if v.tx == nil {
		return "", false
	}
	val, err := v.tx.Get(k)
	if err != nil {
		return "", false
	}
	return val, true
}

func (v *view) has(k string) bool {
	_, ok := v.get(k)
	return ok
}

func (v *view) touch(k string) {
	if _, ok := v.over[k]; !ok {
		v.order = append(v.order, k)
		if len(k) > childPrefixLen && k[1] == ':' && k[childPrefixLen-1] == ':' {
			p := k[:childPrefixLen]
			v.children[p] = append(v.children[p], k)
		}
	}
}

func (v *view) set(k, val string) {
	v.touch(k)
	v.over[k] = &val
}

func (v *view) del(k string) {
	v.touch(k)
	v.over[k] = nil
}

// keysWithPrefix lists the live keys that start with prefix.
func (v *view) keysWithPrefix(prefix string) []string { return v.keysFrom(prefix, "") }

// keysFrom lists the live keys that start with prefix and sort at or
// after start (from the first such key when start is ""), in no
// particular order.
func (v *view) keysFrom(prefix, start string) []string {
	start = max(start, prefix)
	var keys []string
	if v.tx != nil {
		_ = v.tx.AscendGreaterOrEqual("", start, func(k, _ string) bool {
			if !strings.HasPrefix(k, prefix) {
				return false
			}
			if p, ok := v.over[k]; !ok || p != nil {
				keys = append(keys, k)
			}
			return true
		})
	}
	for _, k := range v.changed(prefix) {
		if v.over[k] == nil || !strings.HasPrefix(k, prefix) || k < start {
			continue
		}
		if v.tx != nil {
			if _, err := v.tx.Get(k); err == nil {
				continue // listed above
			}
		}
		keys = append(keys, k)
	}
	return keys
}

// anyWithPrefix reports whether a live key starts with prefix.
func (v *view) anyWithPrefix(prefix string) bool {
	for _, k := range v.changed(prefix) {
		if v.over[k] != nil && strings.HasPrefix(k, prefix) {
			return true
		}
	}
	found := false
	if v.tx != nil {
		_ = v.tx.AscendGreaterOrEqual("", prefix, func(k, _ string) bool {
			if !strings.HasPrefix(k, prefix) {
				return false
			}
			if p, ok := v.over[k]; !ok || p != nil {
				found = true
				return false
			}
			return true
		})
	}
	return found
}

// encodeChanges serialises the change set, sealed (tail.go, sealEntry):
// per key, a flag byte (1 set, 0 delete), the key and the value, lengths
// as uvarints.
func (v *view) encodeChanges() string {
	n := 0
	for _, k := range v.order {
		n += 21 + len(k)
		if p := v.over[k]; p != nil {
			n += len(*p)
		}
	}
	b := make([]byte, sealLen, sealLen+n)
	for _, k := range v.order {
		p := v.over[k]
		if p == nil {
			b = append(b, 0)
		} else {
			b = append(b, 1)
		}
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		if p != nil {
			b = binary.AppendUvarint(b, uint64(len(*p)))
			b = append(b, *p...)
		}
	}
	return sealEntry(b)
}

// change is one entry of a decoded change set.
type change struct {
	key string
	val *string // nil: delete
}

// decodeChanges decodes a log entry read back, checking its seal.
func decodeChanges(s string) ([]change, error) {
	body, err := openEntry(s)
	if err != nil {
		return nil, err
	}
	return decodeBody(body)
}

// decodeBody decodes a change set (an entry past its seal).
func decodeBody(s string) ([]change, error) {
	var out []change
	for len(s) > 0 {
		flag := s[0]
		s = s[1:]
		key, rest, err := readLenPrefixed(s)
		if err != nil {
			return nil, err
		}
		s = rest
		c := change{key: key}
		if flag == 1 {
			val, rest, err := readLenPrefixed(s)
			if err != nil {
				return nil, err
			}
			s = rest
			c.val = &val
		} else if flag != 0 {
			return nil, errors.New("change set: bad flag")
		}
		out = append(out, c)
	}
	return out, nil
}

func readLenPrefixed(s string) (string, string, error) {
	n, w := binary.Uvarint([]byte(s[:min(len(s), binary.MaxVarintLen64)]))
	if w <= 0 || n > uint64(len(s)-w) {
		return "", "", fmt.Errorf("change set: bad length")
	}
	return s[w : w+int(n)], s[w+int(n):], nil
}

// applyChanges writes a change set into a writable transaction.
func applyChanges(tx *buntdb.Tx, changes []change) error {
	for _, c := range changes {
		if c.val == nil {
			if _, err := tx.Delete(c.key); err != nil && !errors.Is(err, buntdb.ErrNotFound) {
				return fmt.Errorf("delete %q: %w", c.key, err)
			}
			continue
		}
		if _, _, err := tx.Set(c.key, *c.val, nil); err != nil {
			return fmt.Errorf("set %q: %w", c.key, err)
		}
	}
	return nil
}

// changes lists the view's change set without encoding it.
func (v *view) changes() []change {
	out := make([]change, len(v.order))
	for i, k := range v.order {
		out[i] = change{key: k, val: v.over[k]}
	}
	return out
}
