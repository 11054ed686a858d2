package db

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// The embedded server's buffer cache is a quarter of the least of the
// machine's memory and the limits of the process's cgroup and those above
// it, from 128 MiB to 1 GiB.
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
		{"a systemd unit under a limited slice (v2)", map[string]string{
			"/proc/self/cgroup":                                      "0::/system.slice/paygate.service\n",
			"/sys/fs/cgroup/memory.max":                              "max\n",
			"/sys/fs/cgroup/system.slice/memory.max":                 "1073741824\n",
			"/sys/fs/cgroup/system.slice/paygate.service/memory.max": "max\n",
			"/proc/meminfo":                                          meminfo}, 1 << 30, 256},
		{"a nested cgroup (v1, hybrid)", map[string]string{
			"/proc/self/cgroup":                                           "4:memory:/process_api/abc\n0::/\n",
			"/sys/fs/cgroup/memory/memory.limit_in_bytes":                 "9223372036854771712\n",
			"/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes": "536870912\n",
			"/sys/fs/cgroup/unified/memory.max":                           "max\n",
			"/proc/meminfo":                                               meminfo}, 512 << 20, 128},
		{"a container of its own namespace (v2)", map[string]string{
			"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "4294967296\n", "/proc/meminfo": meminfo}, 4 << 30, 1024},
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
