"""predq's benchmark: one table of measurements, each against its target.

    .venv/bin/python -m ops.bench                         (make bench; about 4 minutes)
    .venv/bin/python -m ops.bench --only overhead,io --keep-logs

Everything runs here: a private redis-server without persistence (never a shared one), the local
Replicate sandbox (``python -m sandbox``) and real worker processes (``python -m arq ...``).
Redis is flushed before every row. Rows (``ops.bench.rows.ROWS``):

1. enqueue: N ``Producer.enqueue`` calls, ``asyncio.gather``-ed in chunks (concurrent requests of
   a web app), against as many of arq's own ``enqueue_job`` in the same run; jobs/s of both,
   predq's as a share of arq's.
2. enqueue-many: the same N jobs through ``Producer.enqueue_many`` in batches; jobs/s.
3. overhead: predq's worker against a bare arq function making the same replicate call
   (``ops/bench/bare_arq.py``), same max_jobs, poll delays, Redis and sandbox at zero latency;
   jobs pre-enqueued, alternated runs, the best of three each; predq's rate as a share of bare
   arq's, and its Redis CPU per job against bare arq's.
4. io: 2,000 one-second predictions on 500 slots; wall time against the ideal 2,000/500 x 1 s,
   and the worker's CPU per job.
5. memory: the worker's peak RSS with 1,000 predictions in flight at once.
6. redis-commands: Redis commands per job from claim to success, counted with MONITOR (those
   inside Lua scripts included; ``ops/bench/monitor.py``), and again without MONITOR.
7. idle: one worker on an empty queue for 20 s: its CPU (share of a core), Redis commands/s.
8. rate-limit: three workers sharing predq's create budget (600/min, no burst) against a sandbox
   enforcing Replicate's 600 creates per sliding minute; the most creates the sandbox saw in any
   60 s, and its 429s (about 70 s).
9. webhooks: 1,000 predictions in flight at once in one worker, completed by webhook through the
   webhook receiver; polls the sandbox received (none expected), peak in flight, worker RSS.

Worker runs are timed from the moment their pre-enqueued jobs are released to a worker that is
already polling (see ``ops/bench/worker_run.py``), to the last job's success; the worker's
start-up is reported separately. Exit status: 0 when every row ran (met or not), 1 when a row
failed to run.

The modules:

- ``table``: ``Result`` / ``Target`` / ``Check`` (one row and its targets), ``render``;
- ``harness``: ``Bench`` (the private Redis, the work directory, sandbox/worker/receiver starters);
- ``worker_run``: ``WorkerRun`` (workers timed from their jobs' release), ``RunStats``;
- ``sampling``: CPU and RSS from /proc, ``PeakSampler``;
- ``runs``: the echo jobs and the predq / bare-arq runs the rows share;
- ``monitor``: Redis commands counted with MONITOR (``Monitored``) and ``INFO commandstats``;
- ``rows_enqueue``, ``rows_worker``, ``rows_lean``, ``rows_limits``, ...: the rows; ``rows``: the
  table of them and ``bench_main``; ``__main__``: the command line; ``bare_arq``: the baseline
  worker.
"""
