"""Every Redis key predq writes, built here and nowhere else (arq's own keys: producer/arq_wire.py).

| key                           | type   | TTL                                   | writer                  | reader            |
|-------------------------------|--------|---------------------------------------|-------------------------|-------------------|
| predq:job:{id}                | hash   | none while live; retention_s if final | JobStore (Lua)          | JobStore          |
| predq:state:{state}           | zset   | none: id -> last change (ms); final   | JobStore (Lua)          | JobStore          |
|                               |        | sets pruned past retention_s          |                         |                   |
| predq:idem:{sha256(key)}      | string | idempotency_window_s                  | JobStore.create (Lua)   | JobStore.create   |
| predq:prediction:{pid}        | string | retention_s: the job that owns a      | JobStore (Lua)          | JobStore (Lua)    |
|                               |        | Replicate prediction                  |                         |                   |
| predq:webhook:{pid}           | string | 1 day: a verified final prediction    | webhook receiver        | worker (waiters)  |
| predq:webhooks (channel)      | pubsub | -: ids of predictions whose webhook   | webhook receiver        | worker (waiters)  |
|                               |        | arrived                               |                         |                   |
| predq:ratelimit:{kind}        | string | the bucket's horizon: GCRA time       | worker (ratelimit.py)   | worker            |
| predq:ratelimit:{kind}:pause  | string | Retry-After of the last 429           | worker (ratelimit.py)   | worker            |
| predq:model-slots:{model}     | zset   | 2 x lease_s: jobs holding a slot      | worker (model_slots.py) | worker            |
| predq:outputs:expiry          | zset   | none: job id -> when its record (and  | JobStore (Lua)          | worker (outputs   |
|                               |        | so its output files) expires; swept   |                         | sweeper)          |
| predq:events:{id}             | stream | none while live; retention_s if final | JobStore (Lua)          | Producer.stream   |
|                               |        | (at most EVENTS_MAXLEN entries)       |                         |                   |
| predq:finished (channel)      | pubsub | -: ids of jobs that became final      | JobStore (Lua)          | Producer.wait     |
| predq:callbacks               | zset   | none: job id -> when its completion   | JobStore (Lua), worker  | worker (callbacks)|
|                               |        | callback is due (the outbox)          |                         |                   |
| predq:workers                 | zset   | none: worker id -> last heartbeat     | worker (registry.py)    | producer (stats)  |
|                               |        | (ms); entries a day old are pruned    |                         |                   |
| predq:worker:{id}             | hash   | 1 day, refreshed by each heartbeat    | worker (registry.py)    | producer (stats)  |
| predq:history:{minute}        | hash   | HISTORY_TTL_S: that minute's counts   | worker (registry.py)    | producer (stats)  |
|                               |        | (finished by outcome and model, ...)  |                         |                   |
| {queue} (predq:queue)         | zset   | none: ids leave it when the job ends  | JobStore (Lua), arq     | arq worker,       |
|                               |        | (its final transition, or arq)        |                         | worker/claim.py   |
| arq:job:{id}                  | string | none: deleted when the job ends (its  | JobStore (Lua), arq    | arq worker        |
|                               |        | final transition, or arq)             |                         |                   |
| arq:in-progress:{id}          | string | a lease (worker/lease.py); set for    | worker/claim.py, lease, | arq worker,       |
|                               |        | largest function timeout + 10 s; its  | JobStore (Lua), arq     | claim, lease, Lua |
|                               |        | value is the claiming worker's id     |                         |                   |
| arq:retry:{id}                | string | arq: 88,400 s; deleted when the job   | arq worker, JobStore    | arq worker        |
|                               |        | ends                                  | (Lua)                   |                   |
| {queue}:health-check          | string | health_check_interval + 1 s           | arq worker              | `arq --check`     |

arq's result keys (``arq:result:{id}``) are never written: workers run with ``keep_result=0``
because the JobRecord is the result, and ``arq:abort`` is never used (predq cancels through the
record).
"""

from __future__ import annotations

import hashlib

from producer.models import JobState

JOB_PREFIX = "predq:job:"
STATE_PREFIX = "predq:state:"
IDEMPOTENCY_PREFIX = "predq:idem:"
PREDICTION_PREFIX = "predq:prediction:"
WEBHOOK_PREFIX = "predq:webhook:"
RATELIMIT_PREFIX = "predq:ratelimit:"
MODEL_SLOTS_PREFIX = "predq:model-slots:"
#: The jobs whose output files are in the output store, scored by when their records expire.
OUTPUTS_EXPIRY = "predq:outputs:expiry"
EVENTS_PREFIX = "predq:events:"
#: A job's event stream keeps about this many events (the oldest are trimmed).
EVENTS_MAXLEN = 10_000
WORKERS = "predq:workers"
WORKER_PREFIX = "predq:worker:"
HISTORY_PREFIX = "predq:history:"
#: How long a minute of history is kept (a week, and a day to spare).
HISTORY_TTL_S = 8 * 86400
#: The completion callbacks to deliver: job id -> when the next attempt is due (ms).
CALLBACKS = "predq:callbacks"
#: Pub/sub channel: the id of every job that reaches a final state.
FINISHED_CHANNEL = "predq:finished"
#: Pub/sub channel: the ids of predictions whose completion webhook arrived.
WEBHOOK_CHANNEL = "predq:webhooks"
WEBHOOK_TTL_S = 86400


#: How often at most an enqueue wakes the idle workers of a queue (the rest ride on that one).
WAKE_EVERY_MS = 50


def wake_channel(queue_name: str) -> str:
    """Pub/sub channel: a job was queued on ``queue_name`` (idle workers poll at once)."""
    return f"{queue_name}:wake"


def wake_sent(queue_name: str) -> str:
    """Set for WAKE_EVERY_MS after a wake was published: enqueues meanwhile publish none."""
    return f"{queue_name}:wake:sent"


def job(job_id: str) -> str:
    return f"{JOB_PREFIX}{job_id}"


def state_index(state: JobState) -> str:
    return f"{STATE_PREFIX}{state.value}"


#: The per-state indexes in JobState order (the Lua scripts rely on this order).
STATE_INDEXES = tuple(state_index(state) for state in JobState)


def events(job_id: str) -> str:
    """The job's event stream: state changes, progress, streamed output and logs."""
    return f"{EVENTS_PREFIX}{job_id}"


def idempotency(key: str) -> str:
    """Hashed, so any printable user key maps to a short, fixed-shape Redis key."""
    return IDEMPOTENCY_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def prediction(prediction_id: str) -> str:
    return f"{PREDICTION_PREFIX}{prediction_id}"


def webhook(prediction_id: str) -> str:
    return f"{WEBHOOK_PREFIX}{prediction_id}"


def rate_bucket(kind: str) -> str:
    """The GCRA bucket of one of the Replicate budgets (``create`` or ``other``)."""
    return f"{RATELIMIT_PREFIX}{kind}"


def rate_pause(kind: str) -> str:
    """Set while every worker holds ``kind``'s budget after a 429."""
    return f"{RATELIMIT_PREFIX}{kind}:pause"


def model_slots(model_name: str) -> str:
    """The jobs holding a slot of a capped model (``owner/name``)."""
    return f"{MODEL_SLOTS_PREFIX}{model_name}"


def worker(worker_id: str) -> str:
    """A worker process's registration (host, pid, concurrency, counts, last seen)."""
    return f"{WORKER_PREFIX}{worker_id}"


def history(minute: int) -> str:
    """The counts of one minute (``minute``: minutes since the epoch)."""
    return f"{HISTORY_PREFIX}{minute}"
