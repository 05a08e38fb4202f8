//go:build !invariants

package replication

// checkPinsLocked checks the pins under -tags invariants only.
func (p *Primary) checkPinsLocked() {}
