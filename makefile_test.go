package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// make deps checks that cgo can work (go test -race needs a C compiler and
// libc's headers): on a machine without them and without apt-get it fails
// with the hint; with a working compiler it passes. make run, bench and soak
// ask for PostgreSQL alone. PATH holds only stand-ins, so nothing is
// installed whoever runs the test.
func TestMakeDepsNeedsACompiler(t *testing.T) {
	t.Parallel()
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Skip("no make")
	}
	goBin, err := exec.LookPath("go")
	require.NoError(t, err)
	bin := t.TempDir()
	link := func(name string) {
		p, err := exec.LookPath(name)
		require.NoError(t, err, name)
		require.NoError(t, os.Symlink(p, filepath.Join(bin, name)))
	}
	for _, name := range []string{"ls", "id", "grep", "awk"} {
		link(name)
	}
	stub := func(name, script string) {
		require.NoError(t, os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+script+"\n"), 0o755))
	}
	// PostgreSQL and Chromium are "installed"; the compiler is not.
	stub("postgres", "exit 0")
	stub("chromium", "exit 0")
	// The go command may leave a telemetry process behind that writes into
	// HOME after it exits, racing the test's cleanup of HOME ("directory
	// not empty"): telemetry is off in this HOME.
	home := t.TempDir()
	telemetry := filepath.Join(home, ".config", "go", "telemetry")
	require.NoError(t, os.MkdirAll(telemetry, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(telemetry, "mode"), []byte("off"), 0o644))
	run := func() (string, error) {
		cmd := exec.Command(makeBin, "--no-print-directory", "deps", "GO="+goBin)
		cmd.Env = []string{"PATH=" + bin, "HOME=" + home, "GOTOOLCHAIN=local", "GOFLAGS="}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run()
	require.Error(t, err, out)
	require.Contains(t, out, "(go test -race needs cgo): sudo apt-get install gcc libc6-dev")

	// make run, bench and soak need only PostgreSQL: neither Chromium nor a
	// compiler.
	require.NoError(t, os.Remove(filepath.Join(bin, "chromium")))
	cmd := exec.Command(makeBin, "--no-print-directory", "deps-db", "GO="+goBin)
	cmd.Env = []string{"PATH=" + bin, "HOME=" + home, "GOTOOLCHAIN=local", "GOFLAGS="}
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
	for _, target := range []string{"run", "bench", "soak"} {
		b, err := exec.Command(makeBin, "-n", "-p", target).CombinedOutput()
		require.NoError(t, err, "%s", b)
		require.Regexp(t, `(?m)^`+target+`: deps-db$`, string(b))
	}
	stub("chromium", "exit 0")

	// A compiler that compiles (reads the program, succeeds) satisfies it.
	stub("gcc", "cat >/dev/null; exit 0")
	out, err = run()
	require.NoError(t, err, out)
	require.NotContains(t, out, "cgo")
}
