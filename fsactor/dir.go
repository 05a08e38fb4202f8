package fsactor

import "sort"

// Readdir cookies: "." and ".." come first, like tmpfs; names follow.
const (
	cookieDot    = 1
	cookieDotDot = 2
	firstCookie  = 3
)

// dirent is one name in a directory. ino == 0 marks a tombstone: the name
// was removed, the slot stays until the next compaction so that cookies of
// the entries around it keep their order.
type dirent struct {
	name   string
	ino    uint64
	cookie uint64
}

// dir is the directory part of an inode: a name map for lookups and an
// append-only list in cookie order for readdir. A readdir offset is a
// cookie, never an index, so entries can be compacted at any time and a
// reader resuming at its offset sees every entry present throughout
// exactly once.
type dir struct {
	// parent is the directory that names this one (".."); the root is its
	// own parent. INVARIANT: for a linked directory, parent lists it.
	parent uint64

	// names maps each live name to its index in ents.
	//
	// INVARIANT: len(names) == number of live entries;
	// ents[names[n]].name == n and ents[names[n]].ino != 0.
	names map[string]int

	// ents holds the entries, tombstones included.
	//
	// INVARIANT: cookies strictly increase along ents, all >= firstCookie
	// and < nextCookie.
	ents []dirent

	// tombs counts the tombstones in ents.
	tombs int

	// subdirs counts the live entries that are directories.
	//
	// INVARIANT: subdirs == number of live entries naming a directory.
	subdirs uint32

	// nextCookie is the cookie the next added name gets.
	nextCookie uint64
}

func newDir(parent uint64) *dir {
	return &dir{parent: parent, names: make(map[string]int), nextCookie: firstCookie}
}

// lookup returns the inode named name, or 0.
func (d *dir) lookup(name string) uint64 {
	if i, ok := d.names[name]; ok {
		return d.ents[i].ino
	}
	return 0
}

// live reports how many names the directory holds.
func (d *dir) live() int { return len(d.names) }

// add appends a new name. The caller checked it does not exist.
func (d *dir) add(name string, ino uint64, isDir bool) {
	if isDir {
		d.subdirs++
	}
	d.names[name] = len(d.ents)
	d.ents = append(d.ents, dirent{name: name, ino: ino, cookie: d.nextCookie})
	d.nextCookie++
}

// replace points an existing name at another inode, keeping its cookie:
// a rename over a name never makes it appear twice to a reader.
func (d *dir) replace(name string, ino uint64, wasDir, isDir bool) {
	d.ents[d.names[name]].ino = ino
	if wasDir {
		d.subdirs--
	}
	if isDir {
		d.subdirs++
	}
}

// remove drops an existing name, leaving a tombstone.
func (d *dir) remove(name string, isDir bool) {
	if isDir {
		d.subdirs--
	}
	i := d.names[name]
	delete(d.names, name)
	d.ents[i] = dirent{cookie: d.ents[i].cookie}
	d.tombs++
	if d.tombs > 32 && d.tombs > len(d.names) {
		d.compact()
	}
}

// compact squeezes the tombstones out of ents; cookies are kept.
func (d *dir) compact() {
	j := 0
	for _, e := range d.ents {
		if e.ino == 0 {
			continue
		}
		d.ents[j] = e
		d.names[e.name] = j
		j++
	}
	clear(d.ents[j:])
	d.ents = d.ents[:j]
	if j == 0 && cap(d.ents) > 1024 {
		d.ents = nil // a drained spool directory gives its memory back
	}
	d.tombs = 0
}

// seek returns the index of the first entry whose cookie is > off.
func (d *dir) seek(off uint64) int {
	return sort.Search(len(d.ents), func(i int) bool { return d.ents[i].cookie > off })
}
