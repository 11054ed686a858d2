package db

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// DefaultSharedBuffersMiB is the embedded server's buffer cache when the
// operator sets none (EMBEDDED_SHARED_BUFFERS): a quarter of the memory this
// process may use (its cgroup's limit, else the machine's), PostgreSQL's own
// advice for a first value, from PostgreSQL's default of 128 MiB up to
// 1 GiB. That default is made to start on any machine; a gateway's tables
// and indexes outgrow it within minutes, and then a backend that needs a
// buffer may first have to write another's dirty page. The cap leaves the
// rest of a container that paygate shares with its database to both.
func DefaultSharedBuffersMiB() int { return sharedBuffersFor(memoryLimit(os.ReadFile)) }

func sharedBuffersFor(limit int64) int {
	return int(min(max(limit/4>>20, 128), 1024))
}

// memoryLimit is the least of the cgroup v2 or v1 memory limit and the
// machine's memory, in bytes; 0 when none can be read.
func memoryLimit(read func(string) ([]byte, error)) int64 {
	var least int64
	consider := func(n int64) {
		if n > 0 && (least == 0 || n < least) {
			least = n
		}
	}
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		if b, err := read(path); err == nil {
			// "max" (v2) or a huge number (v1) when there is no limit.
			n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			consider(n)
		}
	}
	if b, err := read("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				consider(kb << 10)
			}
		}
	}
	return least
}
