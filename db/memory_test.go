package db

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// The embedded server's buffer cache is a quarter of the least of the
// cgroup's limit and the machine's memory, from 128 MiB to 1 GiB.
func TestSharedBuffersFollowTheMemory(t *testing.T) {
	const meminfo = "MemTotal:       24684032 kB\nMemFree:         1000 kB\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		limit int64
		mib   int
	}{
		{"nothing readable", nil, 0, 128},
		{"no cgroup limit (v2)", map[string]string{"/sys/fs/cgroup/memory.max": "max\n", "/proc/meminfo": meminfo}, 24684032 << 10, 1024},
		{"no cgroup limit (v1)", map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n", "/proc/meminfo": meminfo}, 24684032 << 10, 1024},
		{"a 2 GiB container", map[string]string{"/sys/fs/cgroup/memory.max": "2147483648\n", "/proc/meminfo": meminfo}, 2 << 30, 512},
		{"a 1 GiB container (v1)", map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "1073741824\n", "/proc/meminfo": meminfo}, 1 << 30, 256},
		{"a 256 MiB container", map[string]string{"/sys/fs/cgroup/memory.max": "268435456", "/proc/meminfo": meminfo}, 256 << 20, 128},
		{"a machine of 1 GB, unreadable cgroup", map[string]string{"/sys/fs/cgroup/memory.max": "garbage", "/proc/meminfo": "MemTotal: 1000000 kB\n"}, 1000000 << 10, 244},
	} {
		read := func(path string) ([]byte, error) {
			if s, ok := tc.files[path]; ok {
				return []byte(s), nil
			}
			return nil, os.ErrNotExist
		}
		limit := memoryLimit(read)
		require.Equal(t, tc.limit, limit, tc.name)
		require.Equal(t, tc.mib, sharedBuffersFor(limit), tc.name)
	}
}
