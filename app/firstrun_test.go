package app_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"paygate/app"
	"paygate/app/apptest"
	"paygate/merchants"
)

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestHelpExitsZero(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}, {"serve", "--help"}, {"merchant", "--help"}} {
		var out, errOut bytes.Buffer
		require.Equal(t, 0, app.Main(args, envOf(), &out, &errOut), "%v: %s", args, errOut.String())
		require.Contains(t, out.String(), "paygate merchant create", args)
	}
	require.Equal(t, 2, app.Main([]string{"frobnicate"}, envOf(), &bytes.Buffer{}, &bytes.Buffer{}))
}

// Commands other than serve never create an embedded database: from the
// wrong folder they say where they looked and how to point them elsewhere.
func TestCommandsOtherThanServeNeedAnExistingDatabase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	for _, args := range [][]string{
		{"merchant", "create", "--name", "Acme", "--email", "ops@acme.test"},
		{"migrate"},
	} {
		var out, errOut bytes.Buffer
		code := app.Main(args, envOf("DATA_DIR", data), &out, &errOut)
		require.Equal(t, 1, code, args)
		require.Empty(t, out.String(), "no credentials printed")
		msg := errOut.String()
		require.Contains(t, msg, "no embedded database in "+data)
		require.Contains(t, msg, "DATA_DIR=")
		require.Contains(t, msg, "DATABASE_URL=")
		require.Contains(t, msg, `"database":"embedded","data_dir":"`+data+`"`, "says which database it looked for")
		require.Equal(t, 1, strings.Count(msg, "no embedded database"), "printed once: %s", msg)
		_, err := os.Stat(data)
		require.True(t, os.IsNotExist(err), "nothing created in %s", data)
	}
}

// A DATABASE_URL that cannot be parsed, or reached, is reported under that
// name, without its password.
func TestWrongDatabaseURLNamesTheVariable(t *testing.T) {
	t.Parallel()
	var errOut bytes.Buffer
	code := app.Main([]string{"migrate"}, envOf("DATABASE_URL", "postgres://u:hunter2@host:notaport/db"), &bytes.Buffer{}, &errOut)
	require.Equal(t, 2, code)
	require.Contains(t, errOut.String(), "DATABASE_URL")
	require.NotContains(t, errOut.String(), "hunter2")

	// An "@" in the password, not percent-encoded, would make the rest of
	// the password the host.
	errOut.Reset()
	code = app.Main([]string{"migrate"}, envOf("DATABASE_URL", "postgres://u:hun@ter2@127.0.0.1:1/db"), &bytes.Buffer{}, &errOut)
	require.Equal(t, 2, code)
	require.Contains(t, errOut.String(), "%40")
	require.NotContains(t, errOut.String(), "ter2")

	// Nothing listens on the port: the connection is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	errOut.Reset()
	url := "postgres://u:hunter2@127.0.0.1:" + strconv.Itoa(port) + "/shop?sslmode=disable"
	code = app.Main([]string{"migrate"}, envOf("DATABASE_URL", url), &bytes.Buffer{}, &errOut)
	require.Equal(t, 1, code)
	require.Contains(t, errOut.String(), "DATABASE_URL: cannot connect")
	require.Contains(t, errOut.String(), `"database":"external","host":"127.0.0.1"`)
	require.NotContains(t, errOut.String(), "hunter2")
	require.Equal(t, 1, strings.Count(errOut.String(), "cannot connect"), "printed once")
}

// A port in use is reported before the slow steps: no cluster is created.
func TestPortInUseIsReportedFirst(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", ":0")
	require.NoError(t, err)
	defer ln.Close()
	data := filepath.Join(t.TempDir(), "data")
	var errOut bytes.Buffer
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	code := app.Main([]string{"serve"}, envOf("PORT", port, "DATA_DIR", data), &bytes.Buffer{}, &errOut)
	require.Equal(t, 1, code)
	require.Contains(t, errOut.String(), "PORT="+port+": cannot listen")
	_, err = os.Stat(data)
	require.True(t, os.IsNotExist(err), "no database was initialised")
}

// paygate healthcheck exits 0 only when /ready on this machine's PORT
// answers 200.
func TestHealthcheckCommand(t *testing.T) {
	t.Parallel()
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	port := strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
	run := func() int {
		return app.Main([]string{"healthcheck"}, envOf("PORT", port, "DATA_DIR", "/nonexistent"), &bytes.Buffer{}, &bytes.Buffer{})
	}
	require.Equal(t, 0, run())
	status.Store(http.StatusServiceUnavailable)
	require.Equal(t, 1, run())
	srv.Close()
	require.Equal(t, 1, run(), "nothing listening")
}

// merchant rotate-secret gives a merchant a new API secret, printed once:
// the new one works at once, even in a process that cached the old one;
// the old one is refused by a process that has not (and by every process
// within a minute); the merchant's dashboard sessions are ended. An unknown
// key and the test merchant's fixed credentials are refused.
func TestMerchantRotateSecret(t *testing.T) {
	t.Parallel()
	a := apptest.New(t)
	env := envOf("DATABASE_URL", a.Config.DatabaseURL, "LOG_LEVEL", "error")
	var out, errOut bytes.Buffer
	require.Equal(t, 0, app.Main([]string{"merchant", "create", "--name", "Acme", "--email", "ops@acme.test"}, env, &out, &errOut), errOut.String())
	field := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindStringSubmatch(out.String())
		require.Len(t, m, 2, out.String())
		return m[1]
	}
	key, oldSecret, id := field("api_key"), field("api_secret"), field("merchant_id")
	old := http.Header{"X-Api-Key": {key}, "X-Api-Secret": {oldSecret}}
	require.Equal(t, http.StatusOK, apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/orders", "", old).Code, "cached")
	_, err := a.Pool.Exec(context.Background(), `INSERT INTO dashboard_sessions (token_hash, merchant_id, expires_at)
		VALUES (sha256('a'), $1, now() + interval '1 hour'), (sha256('b'), $1, now() + interval '1 hour')`, id)
	require.NoError(t, err)

	out.Reset()
	require.Equal(t, 0, app.Main([]string{"merchant", "rotate-secret", "--key", key}, env, &out, &errOut), errOut.String())
	require.Equal(t, key, field("api_key"))
	require.Equal(t, id, field("merchant_id"))
	newSecret := field("api_secret")
	require.Regexp(t, `^secret_[A-Za-z0-9]{40}$`, newSecret)
	require.NotEqual(t, oldSecret, newSecret)

	rec := apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/orders", "", http.Header{"X-Api-Key": {key}, "X-Api-Secret": {newSecret}})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	fresh := merchants.NewAuth(a.Pool, true)
	_, err = fresh.Verify(context.Background(), key, oldSecret)
	require.ErrorIs(t, err, merchants.ErrUnauthorized)
	_, err = fresh.Verify(context.Background(), key, newSecret)
	require.NoError(t, err)
	var sessions int
	require.NoError(t, a.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dashboard_sessions WHERE merchant_id = $1`, id).Scan(&sessions))
	require.Zero(t, sessions)

	for _, k := range []string{"key_nobodyhasthiskey00000", merchants.TestMerchantKey} {
		errOut.Reset()
		require.Equal(t, 1, app.Main([]string{"merchant", "rotate-secret", "--key", k}, env, &out, &errOut))
		require.NotContains(t, errOut.String(), "panic")
	}
	require.Contains(t, errOut.String(), "fixed")
	// The test merchant's secret still works.
	rec = apptest.Do(t, a.Echo, http.MethodGet, "/api/v1/orders", "", apptest.TestMerchant())
	require.Equal(t, http.StatusOK, rec.Code)
	errOut.Reset()
	require.Equal(t, 1, app.Main([]string{"merchant", "rotate-secret"}, env, &out, &errOut))
	require.Contains(t, errOut.String(), "needs --key")
}
