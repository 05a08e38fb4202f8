package bench

import (
	"math/bits"
	"time"
)

// subBits is the number of mantissa bits a histogram bucket keeps: 2^subBits
// buckets per power of two, a relative error of at most 1/32 (about 3%).
const subBits = 5

const (
	subCount   = 1 << subBits
	numBuckets = (64 - subBits + 1) * subCount
)

// Hist is a log-linear latency histogram of nanosecond values with a fixed
// size: recording never allocates and memory does not grow with the count.
// The zero value is empty and ready to use. It is not safe for concurrent
// use; each client keeps its own and they are merged at the end.
type Hist struct {
	counts [numBuckets]uint64
	n      uint64
	max    time.Duration
}

// bucketOf returns the bucket index of a nanosecond value.
func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(v) - subBits - 1
	return (e+1)*subCount + int(v>>uint(e)) - subCount
}

// bucketValue returns a representative value (the middle) of bucket i.
func bucketValue(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	e := i/subCount - 1
	m := uint64(i%subCount + subCount)
	return m<<uint(e) + (uint64(1)<<uint(e))/2
}

// Record adds one latency.
func (h *Hist) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.n++
	if d > h.max {
		h.max = d
	}
}

// Count returns how many latencies were recorded.
func (h *Hist) Count() uint64 { return h.n }

// Max returns the largest latency recorded.
func (h *Hist) Max() time.Duration { return h.max }

// Merge adds every latency of o to h.
func (h *Hist) Merge(o *Hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	if o.max > h.max {
		h.max = o.max
	}
}

// Percentile returns the latency below which a fraction p (0..1) of the
// recorded latencies lie, to within the bucket resolution; 0 when empty.
func (h *Hist) Percentile(p float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(p*float64(h.n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	if rank >= h.n {
		return h.max
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := time.Duration(bucketValue(i))
			if v > h.max {
				return h.max
			}
			return v
		}
	}
	return h.max
}
