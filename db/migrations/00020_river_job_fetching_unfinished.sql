-- +goose NO TRANSACTION
-- +goose Up
-- River's fetching index (state, queue, priority, scheduled_at, id) leaves
-- out completed jobs. Every job row has three versions (inserted, fetched,
-- completed; none HOT, since state is indexed) and every version entered
-- it, so most of it was completed jobs, kept a day, that no query reads
-- through it: River's fetch, scheduler and rescuer, its queue counts, and
-- paygate's searches for a live job (db.LiveJobStates) and its job metrics
-- all name states other than completed, which the planner proves to imply
-- the predicate. The cleaner finds completed jobs through
-- river_job_state_and_finalized_at_index, and River UI's list of them by
-- scanning. A completed version no longer enters it: one index entry fewer
-- per job, three per payment, and an index the size of the live jobs.
--
-- Built concurrently, so that no insert waits while it scans a day of
-- jobs: payments insert their jobs in their own statements. Each step can
-- be run again after an interruption: a half-built index from an
-- interrupted run is dropped first, and the last steps only ever leave the
-- new index under the old name.
DROP INDEX CONCURRENTLY IF EXISTS river_job_fetching_unfinished;
CREATE INDEX CONCURRENTLY river_job_fetching_unfinished ON river_job
    USING btree (state, queue, priority, scheduled_at, id) WHERE state <> 'completed';
DROP INDEX CONCURRENTLY IF EXISTS river_job_prioritized_fetching_index;
ALTER INDEX river_job_fetching_unfinished RENAME TO river_job_prioritized_fetching_index;

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS river_job_fetching_all;
CREATE INDEX CONCURRENTLY river_job_fetching_all ON river_job
    USING btree (state, queue, priority, scheduled_at, id);
DROP INDEX CONCURRENTLY IF EXISTS river_job_prioritized_fetching_index;
ALTER INDEX river_job_fetching_all RENAME TO river_job_prioritized_fetching_index;
