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
    GET  /v1/models, /v1/models/{owner}/{name}       models (any owner/name is one)
    GET  /v1/models/{owner}/{name}/versions[/{id}]   its one version (another id: 404)
    GET  /v1/account                                 who the token belongs to
    GET  /v1/webhooks/default/secret                 {"key": "whsec_..."}, fixed per app

- A create answers at once with status `starting`. With `Prefer: wait` / `Prefer: wait=N`
  (1..60 s) it holds until the prediction is terminal or N s passed, answers the terminal
  prediction (its files as `data:` URIs, as Replicate's sync mode does) or a `starting` one
  (`processing` with `--wait-returns-processing`), and adds `Preference-Applied: wait`. A body
  that is not a JSON object with an object `input`, or an input the model rejects, gets 422
  "Input validation failed" with `invalid_fields`; a version id no model has gets 422 "Invalid
  version or not permitted".
- A prediction is `starting` for a tenth of its run (at most 0.1 s; `--boot-s` sets it), then
  `processing` (its logs growing), then terminal at created + run time, with `metrics`
  {`predict_time`, `total_time`}. Status is derived from timestamps on read: nothing runs in the
  background per prediction.
- `Cancel-After: 30s|5m|1h30m|90` (at least 5 s) sets its `deadline`: passed while starting, it
  ends `aborted`; while processing, `canceled`.
- `--output-ttl` (3600 s, as Replicate) after it ended, its output, logs and files are removed:
  `output` null, `data_removed` true, file URLs 404.
- With `--token T`, every `/v1` request needs `Authorization: Bearer T`, else 401.

Models (`sandbox.models`): `sandbox/echo` and any unlisted model succeed after `--latency` with
output = input; `sandbox/sleep` runs `input.seconds` (0..3600, required); `sandbox/fail` fails
after `--latency` with `error` = `input.message`; `sandbox/image` succeeds with
`input.num_outputs` (1..4) PNG URLs served at `/sandbox/files/{id}/{i}.png`, logging tqdm-style
progress; `sandbox/video` gives one file of `input.size_bytes` (streamed, up to 1 GiB).

Webhooks (`sandbox.webhooks`): `start` and `completed` events are POSTed to `webhook`, signed
so that `replicate.webhook.Webhooks.validate` accepts them, retried on failure.

Faults (`sandbox.faults`), per request of the kinds in `--fault-on` (create, get, cancel, list,
file: downloads of output files):
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
    GET  /sandbox/files/{id}/{name}    output files (no token needed, like Replicate's file host)

Load test: `python -m sandbox.loadgen --url http://127.0.0.1:8787` (create + get loops on
keep-alive connections; prints requests/s and latency percentiles).

Known differences from Replicate: no streaming (`urls.stream` is absent, so `async_stream`
raises), no `POST /v1/files`, `output`/`logs` webhook events are not sent separately, `urls.web`
is not served, unknown body keys are ignored, file outputs are `http://` URLs (the client returns
them as `str`, not `FileOutput`), a removed prediction keeps its `input`, and predictions are
kept in memory until `POST /sandbox/reset`.
"""

from sandbox.app import create_app
from sandbox.config import SandboxConfig
from sandbox.server import serve

__all__ = ["SandboxConfig", "create_app", "serve"]
