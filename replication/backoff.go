package replication

import (
	"github.com/cenkalti/backoff/v5"
)

// linkJitter spreads a link's reconnect delays by ±12.5% around the
// doubling schedule, so that the links of many primaries to one replica
// that restarted do not come back in step. (The hand-written loop it
// replaces added 0 to 25%: the same spread, centred.)
const linkJitter = 0.125

// retrySchedule is the retry schedule of replication's loops (acquiring a term,
// fetching the state, installing it, a link's reconnects): MinBackoff,
// doubling, capped at MaxBackoff, each delay spread by ±jitter (0: none),
// by cenkalti/backoff. A loop calls NextBackOff before each wait and
// Reset when it made progress.
func (c PrimaryConfig) retrySchedule(jitter float64) *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{
		InitialInterval:     c.MinBackoff,
		RandomizationFactor: jitter,
		Multiplier:          2,
		MaxInterval:         c.MaxBackoff,
	}
}
