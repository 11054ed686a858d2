package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// instruction is one Dockerfile instruction with its continuation lines
// joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
	line int
}

func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		cont := strings.HasSuffix(trimmed, "\\")
		cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
		if cont {
			continue
		}
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start})
		cur.Reset()
	}
	require.Zero(t, cur.Len(), "the Dockerfile ends inside a continued line")
	return out
}

// The rules that matter for this image, checked the way a linter (hadolint)
// would, without needing one installed.
func TestDockerfileLint(t *testing.T) {
	t.Parallel()
	ins := parseDockerfile(t, "Dockerfile")
	var final []instruction // the last stage
	var stages int
	for _, in := range ins {
		if in.cmd == "FROM" {
			stages++
			final = nil
		}
		final = append(final, in)
	}
	require.GreaterOrEqual(t, stages, 2, "multi-stage: the toolchain stays out of the image")
	has := func(cmd string) []instruction {
		var out []instruction
		for _, in := range final {
			if in.cmd == cmd {
				out = append(out, in)
			}
		}
		return out
	}

	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			// Pinned: a tag, never latest; the Go toolchain to its patch
			// release, Debian to its release (codename).
			image := strings.Fields(in.args)[0]
			name, tag, ok := strings.Cut(image, ":")
			require.True(t, ok || strings.Contains(image, "@sha256:"), "line %d: %s has no tag", in.line, image)
			require.NotEqual(t, "latest", tag, "line %d", in.line)
			if name == "golang" {
				require.Regexp(t, `^\d+\.\d+\.\d+-`, tag, "line %d: pin Go to a patch release", in.line)
			}
			if name == "debian" {
				require.Regexp(t, `^(bookworm|trixie|\d+(\.\d+)?)(-|$)`, tag, "line %d: pin Debian to a release", in.line)
			}
		case "RUN":
			if strings.Contains(in.args, "apt-get install") {
				require.Contains(t, in.args, "apt-get update", "line %d: update in the same layer", in.line)
				require.Contains(t, in.args, "--no-install-recommends", "line %d", in.line)
				require.Contains(t, in.args, "rm -rf /var/lib/apt/lists/*", "line %d: apt lists removed", in.line)
				require.Regexp(t, `-y\b`, in.args, "line %d: non-interactive", in.line)
			}
			require.NotRegexp(t, `\b(curl|wget)\b[^|]*\|\s*(sh|bash)`, in.args, "line %d: no piping downloads into a shell", in.line)
		case "ENV", "ARG":
			// No secrets baked into the image, and no test mode.
			require.NotRegexp(t, `(?i)(SECRET|PASSWORD|TOKEN|DATABASE_URL)\s*=`, in.args, "line %d", in.line)
			require.NotRegexp(t, `(?i)TEST_MODE\s*=\s*true`, in.args, "line %d: the image must not seed the test merchant", in.line)
		case "ADD":
			t.Errorf("line %d: use COPY, not ADD", in.line)
		}
	}

	copies := has("COPY")
	for _, in := range ins {
		if in.cmd == "COPY" || in.cmd == "RUN" {
			// Flags the legacy builder refuses: the image builds with or
			// without BuildKit.
			require.NotRegexp(t, `--(chmod|chown|link|mount|parents|exclude)\b`, in.args, "line %d: needs BuildKit", in.line)
		}
	}
	// The entry point keeps its mode through COPY: git must record it executable.
	if out, err := exec.Command("git", "ls-files", "-s", "docker-entrypoint.sh").Output(); err == nil && len(out) > 0 {
		require.True(t, strings.HasPrefix(string(out), "100755 "), "git must track docker-entrypoint.sh as executable: %s", out)
	}
	info, err := os.Stat("docker-entrypoint.sh")
	require.NoError(t, err)
	require.NotZero(t, info.Mode()&0o111, "docker-entrypoint.sh is executable")
	// The whole stop, PostgreSQL's included, fits in Docker's default grace
	// of 10 s before SIGKILL, with room to spare.
	var shutdown time.Duration
	for _, in := range has("ENV") {
		for _, kv := range strings.Fields(in.args) {
			if v, ok := strings.CutPrefix(kv, "SHUTDOWN_TIMEOUT="); ok {
				shutdown, err = time.ParseDuration(v)
				require.NoError(t, err, "line %d", in.line)
			}
		}
	}
	require.NotZero(t, shutdown, "the image sets SHUTDOWN_TIMEOUT")
	require.LessOrEqual(t, shutdown, 8*time.Second, "SHUTDOWN_TIMEOUT leaves at least 2 s of Docker's 10 s")
	require.True(t, containsArgs(copies, "--from=build /out/paygate /usr/local/bin/paygate"), "the binary is copied from the build stage")
	entry := has("ENTRYPOINT")
	require.Len(t, entry, 1)
	require.Equal(t, `["/usr/local/bin/docker-entrypoint.sh"]`, entry[0].args, "exec form, through the entry point")
	require.True(t, containsArgs(copies, "docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh"))
	require.Empty(t, has("USER"), "the entry point starts as root to fix the data folder, then drops to postgres")
	script, err := os.ReadFile("docker-entrypoint.sh")
	require.NoError(t, err)
	require.Contains(t, string(script), "set -eu")
	require.Contains(t, string(script), "chown -R postgres:postgres")
	require.Regexp(t, `exec setpriv --reuid=postgres --regid=postgres --init-groups -- paygate "\$@"`, string(script))

	health := has("HEALTHCHECK")
	require.Len(t, health, 1)
	require.Contains(t, health[0].args, `CMD ["paygate", "healthcheck"]`)
	require.Regexp(t, `--timeout=\d+s`, health[0].args)
	require.Len(t, has("STOPSIGNAL"), 1)
	require.Equal(t, "SIGTERM", has("STOPSIGNAL")[0].args)
	require.True(t, containsArgs(has("EXPOSE"), "8000"))
	require.True(t, containsArgs(has("CMD"), `["serve"]`))

	ignore, err := os.ReadFile(".dockerignore")
	require.NoError(t, err)
	for _, p := range []string{".git", "data", "bin"} {
		require.Contains(t, strings.Fields(string(ignore)), p, "the build context leaves out %s", p)
	}
}

func containsArgs(ins []instruction, args string) bool {
	for _, in := range ins {
		if strings.Contains(in.args, args) {
			return true
		}
	}
	return false
}

// The entry point, run as root, hands a root-owned data folder to postgres
// and runs paygate as postgres with the same arguments.
func TestEntrypointDropsRoot(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root, as the container starts")
	}
	pg, err := user.Lookup("postgres")
	if err != nil {
		t.Skip("no postgres user")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("no setpriv")
	}
	dir := t.TempDir()
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	require.NoError(t, os.Chmod(dir, 0o755))
	bin := filepath.Join(dir, "bin")
	require.NoError(t, os.Mkdir(bin, 0o755))
	// A stand-in paygate that says who runs it and with what.
	require.NoError(t, os.WriteFile(filepath.Join(bin, "paygate"), []byte("#!/bin/sh\necho \"$(id -un) $*\"\n"), 0o755))
	data := filepath.Join(dir, "data")
	require.NoError(t, os.Mkdir(data, 0o700)) // root-owned, like a fresh bind mount

	cmd := exec.Command("sh", "docker-entrypoint.sh", "serve", "--role=all")
	cmd.Env = append(os.Environ(), "DATA_DIR="+data, "PATH="+bin+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, "postgres serve --role=all", strings.TrimSpace(string(out)))
	info, err := os.Stat(data)
	require.NoError(t, err)
	owner, err := user.LookupId(uidOf(info))
	require.NoError(t, err)
	require.Equal(t, pg.Username, owner.Username)
}

func uidOf(info os.FileInfo) string {
	return strconv.FormatUint(uint64(info.Sys().(*syscall.Stat_t).Uid), 10)
}

// The image builds when a container engine is present (skipped otherwise),
// and its binary answers help.
func TestDockerImageBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	if exec.Command("docker", "info").Run() != nil {
		t.Skip("no container engine (docker info fails)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tag := "paygate-test:" + strings.ToLower(regexp.MustCompile(`\W`).ReplaceAllString(t.Name(), ""))
	var out bytes.Buffer
	build := exec.CommandContext(ctx, "docker", "build", "-t", tag, ".")
	build.Stdout, build.Stderr = &out, &out
	require.NoError(t, build.Run(), out.String())
	defer exec.Command("docker", "rmi", "-f", tag).Run() //nolint:errcheck // best effort
	help, err := exec.CommandContext(ctx, "docker", "run", "--rm", tag, "help").CombinedOutput()
	require.NoError(t, err, string(help))
	require.Contains(t, string(help), "paygate healthcheck")
}
