package db

import (
	"bufio"
	"bytes"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
)

// DefaultSharedBuffersMiB is the embedded server's buffer cache when the
// operator sets none (EMBEDDED_SHARED_BUFFERS): a quarter of the memory this
// process may use (its cgroup's limit, else the machine's), PostgreSQL's own
// advice for a first value, from PostgreSQL's default of 128 MiB up to
// 1 GiB. That default is made to start on any machine, not for a database
// that grows for months. The cap leaves the rest of a container that
// paygate shares with its database to both.
func DefaultSharedBuffersMiB() int { return sharedBuffersFor(memoryLimit(os.ReadFile)) }

func sharedBuffersFor(limit int64) int {
	return int(min(max(limit/4>>20, 128), 1024))
}

// memoryLimit is the least of the machine's memory and the memory limits of
// this process's cgroup and of every cgroup above it (a limit on any of
// them bounds it: a systemd unit's MemoryMax, a container's), in bytes; 0
// when none can be read. Inside a container with its own cgroup namespace
// the process's cgroup is the root of the mount.
func memoryLimit(read func(string) ([]byte, error)) int64 {
	var least int64
	consider := func(n int64) {
		if n > 0 && (least == 0 || n < least) {
			least = n
		}
	}
	var files []string
	if b, err := read("/proc/self/cgroup"); err != nil {
		files = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}
	} else {
		for _, line := range strings.Split(string(b), "\n") {
			// hierarchy:controllers:path, with no controllers for v2's.
			f := strings.SplitN(line, ":", 3)
			if len(f) != 3 {
				continue
			}
			var bases []string
			var name string
			switch {
			case f[0] == "0" && f[1] == "":
				bases, name = []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}, "memory.max"
			case slices.Contains(strings.Split(f[1], ","), "memory"):
				bases, name = []string{"/sys/fs/cgroup/memory"}, "memory.limit_in_bytes"
			default:
				continue
			}
			for dir := path.Clean("/" + f[2]); ; dir = path.Dir(dir) {
				for _, base := range bases {
					files = append(files, path.Join(base, dir, name))
				}
				if dir == "/" {
					break
				}
			}
		}
	}
	for _, file := range files {
		if b, err := read(file); err == nil {
			// "max" (v2) or a huge number (v1) when there is no limit.
			n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			consider(n)
		}
	}
	if b, err := read("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64) // "MemTotal: 24684032 kB"
				consider(kb << 10)
			}
		}
	}
	return least
}
