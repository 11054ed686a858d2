package app

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"paygate/web"
)

// Drain makes /ready answer 503 {"status":"draining"} from now on, so load
// balancers stop sending work here while the process stops.
func (a *App) Drain() {
	if !a.draining.Swap(true) {
		a.Logger.Info("shutdown: /ready answers 503 draining")
	}
}

// Close stops what is running, in order, within ctx's deadline (or
// Config.ShutdownTimeout when ctx has none): River stops fetching and lets
// running jobs finish, then cancels the rest (they go back to the queue with
// their attempt restored); then the heartbeat, the pool and the embedded
// PostgreSQL. HTTP is stopped by the caller first. Close is safe to call
// more than once; only the first call does anything.
func (a *App) Close(ctx context.Context) {
	a.closeOnce.Do(func() {
		// A serving process has drained already and logs each step; the
		// one-shot commands (migrate, merchant create) keep quiet.
		a.stepLevel = slog.LevelDebug
		if a.draining.Load() {
			a.stepLevel = slog.LevelInfo
		}
		a.draining.Store(true) // quietly: a serving process drained already
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, a.shutdownTimeout())
			defer cancel()
		}
		a.stopRiver(ctx)
		if a.stopAdmin != nil {
			a.stopAdmin()
		}
		if a.beat != nil {
			a.beat.stop(ctx)
			a.beat = nil
		}
		a.closePool(ctx)
		if a.embedded != nil {
			a.step("shutdown: stopping embedded postgres")
			if err := a.embedded.Stop(ctx); err != nil {
				a.Logger.Error("shutdown: stop embedded postgres", "error", err)
			}
		}
	})
}

func (a *App) step(msg string, args ...any) {
	a.Logger.Log(context.Background(), a.stepLevel, msg, args...)
}

func (a *App) shutdownTimeout() time.Duration {
	if a.Config.ShutdownTimeout > 0 {
		return a.Config.ShutdownTimeout
	}
	return 10 * time.Second
}

// stopRiver soft-stops River until a reserve before ctx's deadline, then
// cancels the jobs still running. A cancelled worker returns ctx.Err(), and
// River then puts its job back to available with the attempt restored; the
// reserve leaves time for that and for the pool and PostgreSQL after it.
func (a *App) stopRiver(ctx context.Context) {
	if a.River == nil || !a.working.Load() {
		return
	}
	deadline, _ := ctx.Deadline()
	reserve := max(0, min(time.Until(deadline)/4, 2*time.Second))
	a.step("shutdown: river stops fetching; running jobs may finish", "within", time.Until(deadline)-reserve)
	softCtx, cancel := context.WithDeadline(ctx, deadline.Add(-reserve))
	defer cancel()
	hardCtx, cancelHard := context.WithDeadline(ctx, deadline.Add(-reserve/2))
	defer cancelHard()
	// First attempts and first decisions, made outside River, stop alike
	// meanwhile: those waiting are given back as jobs at once, and those
	// still running at the soft deadline are cancelled and given back,
	// which is waited for until the hard deadline (what is not given back
	// by then is the reconciler's).
	var first sync.WaitGroup
	first.Add(2)
	go func() {
		defer first.Done()
		a.Webhooks.StopFirstAttempts(softCtx)
	}()
	go func() {
		defer first.Done()
		a.Payments.StopFirstDecisions(softCtx)
	}()
	firstStopped := make(chan struct{})
	go func() { first.Wait(); close(firstStopped) }()
	defer func() {
		select {
		case <-firstStopped:
		case <-hardCtx.Done():
			a.Logger.Warn("shutdown: first webhook attempts or payment decisions still being given back; the reconciler resumes them")
		}
	}()
	err := a.River.Stop(softCtx)
	if err == nil {
		a.step("shutdown: river stopped; every running job finished")
		return
	}
	a.Logger.Warn("shutdown: jobs still running; cancelling them (they return to the queue)", "error", err)
	if err := a.River.StopAndCancel(hardCtx); err != nil {
		a.Logger.Error("shutdown: river did not stop after cancelling its jobs", "error", err)
		return
	}
	a.step("shutdown: river stopped after cancelling its remaining jobs")
}

// closePool closes the pool, waiting for borrowed connections no longer
// than ctx allows: stopping PostgreSQL next ends whatever still holds one.
func (a *App) closePool(ctx context.Context) {
	if a.Pool == nil {
		return
	}
	a.step("shutdown: closing the database pool")
	closed := make(chan struct{})
	go func() {
		// Side by side: neither pool waits for the other's borrowers.
		var pools sync.WaitGroup
		pools.Go(a.Pool.Close)
		if a.KeptPlans != nil {
			pools.Go(a.KeptPlans.Close)
		}
		pools.Wait()
		close(closed)
	}()
	select {
	case <-closed:
	case <-ctx.Done():
		a.Logger.Warn("shutdown: connections still borrowed at the deadline; going on")
	}
}

// ready answers whether this process can do its role's work now (API.md,
// Operations): the database answers and, in the worker roles, River runs.
func (a *App) ready(c echo.Context) error {
	if a.draining.Load() {
		return web.JSON(c, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := a.Pool.Ping(ctx); err != nil {
		a.Logger.Warn("ready: database unreachable", "error", err)
		return web.JSON(c, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
	}
	if a.role.works() && !a.riverRunning() {
		return web.JSON(c, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
	}
	return web.JSON(c, http.StatusOK, map[string]string{"status": "ready", "role": string(a.role)})
}

func (a *App) riverRunning() bool {
	if !a.working.Load() {
		return false
	}
	select {
	case <-a.River.Stopped():
		return false
	default:
		return true
	}
}

// DatabaseFailed delivers an error when the embedded PostgreSQL's
// supervisor has given up on it; never for an external database.
func (a *App) DatabaseFailed() <-chan error {
	if a.embedded == nil {
		return nil
	}
	return a.embedded.Failed()
}
