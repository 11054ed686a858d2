package app

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

// serve raises the collector's target unless GOGC is set, in which case
// the runtime's reading of it stands. Not parallel: the target is the
// process's.
func TestTuneGC(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)

	tuneGC(func(string) string { return "" })
	require.Equal(t, defaultGCPercent, debug.SetGCPercent(100))

	tuneGC(func(k string) string {
		if k == "GOGC" {
			return "50"
		}
		return ""
	})
	require.Equal(t, 100, debug.SetGCPercent(100), "GOGC is set: the target is left alone")
}
