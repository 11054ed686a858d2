package app

import "runtime/debug"

// defaultGCPercent is the Go collector's target when GOGC is not set: the
// heap may grow to four times what is live before a collection, where Go's
// own default lets it grow to twice. Under load the collector's marking was
// 8–9 % of paygate's CPU profile; with 300 instead of 100, paygate's CPU
// over a bench run fell by 13–17 % (16–27 % per payment of the burst), with
// 3.4 times fewer collections, for a peak RSS of 75–77 MiB instead of 52,
// far under the 200 MB budget (docs/benchmarks-history.md, session 7).
// GOGC, and GOMEMLIMIT for a cap, still decide when set.
const defaultGCPercent = 300

// tuneGC applies defaultGCPercent unless the environment sets GOGC (which
// the runtime has read already).
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}
