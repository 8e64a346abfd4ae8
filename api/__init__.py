"""predq's HTTP API (``predq serve``): the same jobs as the Python producers, for any language.

    app.py       the FastAPI app factory: routes under /v1, /healthz, /readyz, /metrics, OpenAPI
    routes.py    jobs: enqueue (one or a batch), get (long-poll), list, cancel, retry, files
    events.py    a job's events as server-sent events
    auth.py      API keys with two roles (read, full), compared in constant time
    problems.py  every error as application/problem+json, mapped in one place
    metrics.py   queue-level Prometheus gauges read from Redis
    config.py    ApiConfig: the producer's settings plus the API's own

It imports ``producer`` only (never worker, replicate or arq): a route translates HTTP to a
Producer call, and an exception to a problem.
"""
