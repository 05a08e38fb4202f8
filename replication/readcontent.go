package replication

import "fmt"

// Reading data records off the actor.
//
// The actor does not copy a file's content at FLUSH: its data record
// carries a view of the file's memfd at that LSN (Record.Content, a
// volume.Content), and the primary reads it here, on a goroutine of its
// own (readContents), in LSN order, soon after Append. Until a record is
// read, links send nothing at or above it (Primary.readable), so a record
// is never shipped — hence never stored on a replica — without its bytes,
// and a Wait for it cannot succeed before. Once read, the view is
// released (the actor may change the file in place again) and the
// record's size in the log, and in every pin holding it, grows by its
// bytes: logBytes stays the sum of recordSize over the log.

// readContents reads the content of each unread data record in turn until
// the primary stops; then it releases the views left unread.
func (p *Primary) readContents() {
	defer p.wg.Done()
	for {
		if p.ctx.Err() != nil { // stopped: nothing will be sent
			p.releaseUnread()
			return
		}
		p.mu.Lock()
		var r *Record
		if len(p.unread) > 0 {
			r = p.unread[0]
		}
		p.mu.Unlock()
		if r == nil {
			select {
			case <-p.unreadCh:
				continue
			case <-p.ctx.Done():
				p.releaseUnread()
				return
			}
		}
		exts, data, err := r.Content.Read()
		r.Content.Release()
		p.mu.Lock()
		if err != nil {
			p.failLocked(fmt.Errorf("replication: reading the content of lsn %d (inode %d): %w", r.LSN, r.Ino, err))
			p.mu.Unlock()
			p.releaseUnread()
			return
		}
		p.setContentLocked(r, exts, data)
		if p.failed != nil {
			p.mu.Unlock()
			continue
		}
		p.scheduleShipLocked()
		p.wakeQuorum() // a Wait may be waiting for this record
	}
}

// setContentLocked gives the first unread record its bytes (caller holds
// p.mu) and moves readable up to the next unread one.
func (p *Primary) setContentLocked(r *Record, exts []Extent, data []byte) {
	before := recordSize(r)
	r.Extents, r.Data, r.Content = exts, data, nil
	p.countDataLocked(r)
	if r.LSN >= p.first { // still in the log: it weighs its bytes now
		grow := recordSize(r) - before
		p.logBytes += grow
		for _, l := range p.links {
			if l.pin != nil && r.LSN > l.pin.lsn {
				l.pin.bytes += grow
			}
		}
	}
	p.unread[0] = nil
	p.unread = p.unread[1:]
	if len(p.unread) == 0 {
		p.unread = nil
		p.readable = p.head
	} else {
		p.readable = p.unread[0].LSN - 1
	}
	p.trimLocked()
}

// releaseUnread releases the views of the records left unread when the
// primary stopped: they will never be sent.
func (p *Primary) releaseUnread() {
	p.mu.Lock()
	left := p.unread
	p.unread = nil
	p.mu.Unlock()
	for _, r := range left {
		releaseContent(r)
	}
}

// releaseContent releases r's content view, if it has one (a record the
// primary drops).
func releaseContent(r *Record) {
	if r.Content != nil {
		r.Content.Release()
	}
}
