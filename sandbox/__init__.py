"""A local Replicate-compatible HTTP API server, for development, tests and benchmarks.

The unmodified `replicate` 1.0.7 client works against it:

    python -m sandbox --port 8787 --latency 1          # or: predq sandbox
    REPLICATE_BASE_URL=http://127.0.0.1:8787 REPLICATE_API_TOKEN=anything python app.py

or in-process, without sockets:

    client = replicate.Client(api_token="t", base_url="http://sandbox",
                              transport=httpx.ASGITransport(app=create_app(SandboxConfig())))

Replicate API (`/v1`, JSON; errors are `application/problem+json` `{"title","detail","status"}`):

    POST /v1/models/{owner}/{name}/predictions       create (201); body {"input": {...},
    POST /v1/deployments/{owner}/{name}/predictions    "webhook"?, "webhook_events_filter"?,
    POST /v1/predictions                               "stream"? (ignored)}; /v1/predictions also
                                                       takes "version": id | owner/name[:id]
    GET  /v1/predictions/{id}                        the prediction now (404 if unknown)
    POST /v1/predictions/{id}/cancel                 cancel if not terminal; 200 either way
    GET  /v1/predictions                             newest first, 100 per page, ?cursor=,
                                                       ?created_after= / ?created_before= (ISO-8601)
    GET  /v1/models/{owner}/{name}/versions/{id}     a Version (any id exists)
    GET  /v1/webhooks/default/secret                 {"key": "whsec_..."}, fixed per app

- A create answers at once with status `starting`. With `Prefer: wait` / `Prefer: wait=N`
  (1..60 s) it holds until the prediction is terminal or N s passed, answers the terminal
  prediction or a `starting` one (`processing` with `--wait-returns-processing`), and adds
  `Preference-Applied: wait`. A body that is not a JSON object with an object `input`, or an
  input the model rejects, gets 422 "Input validation failed" with `invalid_fields`.
- A prediction is `starting` for a tenth of its run (at most 0.1 s), then `processing`, then
  terminal at created + run time, with `metrics` {`predict_time`, `total_time`}. Status is
  derived from timestamps on read: nothing runs in the background per prediction.
- With `--token T`, every `/v1` request needs `Authorization: Bearer T`, else 401.

Models (`sandbox.models`): `sandbox/echo` and any unlisted model succeed after `--latency` with
output = input; `sandbox/sleep` runs `input.seconds` (0..3600, required); `sandbox/fail` fails
after `--latency` with `error` = `input.message`; `sandbox/image` succeeds with
`input.num_outputs` (1..4) PNG URLs served at `/sandbox/files/{id}/{i}.png`.

Webhooks (`sandbox.webhooks`): `start` and `completed` events are POSTed to `webhook`, signed
so that `replicate.webhook.Webhooks.validate` accepts them, retried on failure.

Faults (`sandbox.faults`), per request of the kinds in `--fault-on` (create, get, cancel, list):
`--throttle-rate` (429 + Retry-After), `--error-rate` (500/502/503 JSON or an HTML 502),
`--slow-rate` (held `--slow-s`), `--lost-create-rate` (made, then 502 HTML); `--seed` makes them
reproducible. `--create-limit` / `--other-limit` enforce per-minute limits (sliding 60 s, 429).

Control endpoints (no auth, faults or limits):

    GET  /sandbox/health     {"status": "ok"}
    GET  /sandbox/stats      counts: requests, polls, created, canceled, succeeded, failed,
                             in_flight, throttled, server_errors, slow, lost_creates,
                             duplicate_inputs, webhooks_sent, webhooks_failed, max_creates_per_60s
    GET  /sandbox/faults     the live settings and queued faults
    POST /sandbox/faults     change settings live: {"error_rate": 0.1, "latency_s": 2, ...}; and/or
                             queue one-shot faults {"queue": [{"on": "create", "fault": "throttle"}]}
                             (fault: throttle | error | slow | lost; error takes "status": 5xx)
    POST /sandbox/reset      forget predictions, counters and queued faults (settings stay)
    GET  /sandbox/files/{id}/{i}.png   the outputs of `sandbox/image`

Load test: `python -m sandbox.loadgen --url http://127.0.0.1:8787` (create + get loops on
keep-alive connections; prints requests/s and latency percentiles).

Known differences from Replicate: no streaming (`urls.stream` is absent, so `async_stream`
raises), no `POST /v1/files`, no `Cancel-After` deadlines or `aborted` status, `output`/`logs`
webhook events are not sent separately, `urls.web` is not served, unknown body keys are
ignored, file outputs are `http://` URLs (the client returns them as `str`, not `FileOutput`),
and predictions are kept in memory until `POST /sandbox/reset` (never expire).
"""

from sandbox.app import create_app
from sandbox.config import SandboxConfig
from sandbox.server import serve

__all__ = ["SandboxConfig", "create_app", "serve"]
