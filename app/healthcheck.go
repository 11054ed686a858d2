package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// healthcheck is `paygate healthcheck`, the container's HEALTHCHECK (the image
// has no curl): it asks the gateway on this machine's PORT whether it is
// ready and exits 0 on 200, 1 otherwise. It never opens the database itself.
func healthcheck(cfg Config, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	url := "http://127.0.0.1:" + strconv.Itoa(cfg.Port) + "/ready"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "healthcheck: %s answered %d\n", url, resp.StatusCode)
		return 1
	}
	return 0
}
