package replication

// Partial data records: the ranges that changed.
//
// A data record the actor marks Partial carries the byte ranges of the
// file written, punched, zeroed or copied into since the file's previous
// data record (Record.Ranges), and within them the runs that are not
// holes (Extents, Data). Applying it rewrites only the chunks those
// ranges touch: each one is read, the ranges' part of it set to zeros,
// the data copied over, and it is stored again only if it changed
// (deleted when nothing non-zero is left). The bytes outside the ranges
// stay as they were; the size is then the record's (putAttr cuts what a
// shrink leaves past it). Whoever applies a partial record must hold the
// file as it was after every record before it: replicas apply records in
// LSN order and a lagging one gets the records it misses or a snapshot,
// never a later record alone.

// checkPartial validates what a data record says about ranges: a record
// that is not partial has none; a partial one has ranges sorted, not
// empty, neither overlapping nor touching, within the size, at most
// maxExtents of them, and every extent of its data inside one range.
// checkContent has checked the extents themselves.
func checkPartial(r *Record) error {
	if !r.Partial {
		if r.Ranges != nil {
			return invalidf("ranges on a data record that is not partial")
		}
		return nil
	}
	if len(r.Ranges) > maxExtents {
		return invalidf("%d ranges exceed the limit %d", len(r.Ranges), maxExtents)
	}
	var end uint64
	for i, g := range r.Ranges {
		switch {
		case g.Len == 0:
			return invalidf("range %d is empty", i)
		case i > 0 && g.Off <= end:
			return invalidf("range %d at %d overlaps or touches the one before (ending at %d)", i, g.Off, end)
		case g.Off > r.Attr.Size || g.Len > r.Attr.Size-g.Off:
			return invalidf("range %d [%d, +%d) beyond size %d", i, g.Off, g.Len, r.Attr.Size)
		}
		end = g.Off + g.Len
	}
	return extentsInRanges(extentsOf(r.Extents, r.Data), r.Ranges)
}

// extentsInRanges checks that each extent (sorted) lies inside one range
// (sorted).
func extentsInRanges(exts, ranges []Extent) error {
	j := 0
	for i, e := range exts {
		for j < len(ranges) && ranges[j].Off+ranges[j].Len <= e.Off {
			j++
		}
		if j == len(ranges) || e.Off < ranges[j].Off || e.Off+e.Len > ranges[j].Off+ranges[j].Len {
			return invalidf("extent %d [%d, +%d) is not inside one of the record's ranges", i, e.Off, e.Len)
		}
	}
	return nil
}

// writeRanges applies a partial record's content (validated) to file ino:
// every chunk the ranges touch gets zeros inside the ranges, then the
// data where the extents place it; chunks whose stored bytes change are
// set (or deleted when left all zeros), the others are left alone.
func (a *applier) writeRanges(ino uint64, ranges, exts []Extent, data []byte) {
	exts = extentsOf(exts, data)
	buf := make([]byte, contentChunk)
	ri, ei := 0, 0    // first range, extent that may touch the current chunk
	dpos := uint64(0) // offset in data of exts[ei]'s bytes
	next := uint64(0) // first chunk index not done yet
	for _, g := range ranges {
		first, last := max(g.Off/contentChunk, next), (g.Off+g.Len-1)/contentChunk
		for idx := first; idx <= last; idx++ {
			base, top := idx*contentChunk, (idx+1)*contentChunk
			for ri < len(ranges) && ranges[ri].Off+ranges[ri].Len <= base {
				ri++
			}
			for ei < len(exts) && exts[ei].Off+exts[ei].Len <= base {
				dpos += exts[ei].Len
				ei++
			}
			k := chunkKey(ino, idx)
			old, _ := a.v.get(k)
			clear(buf)
			copy(buf, old)
			for j := ri; j < len(ranges) && ranges[j].Off < top; j++ {
				lo, hi := max(ranges[j].Off, base), min(ranges[j].Off+ranges[j].Len, top)
				clear(buf[lo-base : hi-base])
			}
			d := dpos
			for j := ei; j < len(exts) && exts[j].Off < top; j++ {
				e := exts[j]
				lo, hi := max(e.Off, base), min(e.Off+e.Len, top)
				copy(buf[lo-base:hi-base], data[d+lo-e.Off:d+hi-e.Off])
				d += e.Len
			}
			a.putChunk(k, old, trimZeros(buf))
		}
		next = last + 1
	}
}

// putChunk stores chunk as key k, whose stored value is old: set when it
// differs, deleted when it holds nothing but zeros.
func (a *applier) putChunk(k, old string, chunk []byte) {
	switch {
	case len(chunk) == 0 && old != "":
		a.v.del(k)
	case len(chunk) > 0 && old != string(chunk):
		a.v.set(k, string(chunk))
	}
}
