"""The webhook receiver: where Replicate reports finished predictions, when webhooks are on.

    REDIS_URL=... PREDQ_WEBHOOK_SECRET=whsec_... python -m worker.webhook_receiver --port 8080

It must be reachable by Replicate at ``PREDQ_WEBHOOK_URL`` (workers send that URL with every
create). ``POST /replicate/webhook`` verifies the message with Replicate's signature scheme (the
replicate client's own ``Webhooks.validate``: HMAC-SHA256 with the account's signing secret, five
minutes of timestamp tolerance), then stores the final prediction under ``predq:webhook:{id}`` and
announces its id on the ``predq:webhooks`` channel, where the waiting worker picks it up. Messages
for predictions that are not final are acknowledged and ignored. Replicate retries a message that
was not acknowledged, and storing is idempotent, so a retry is harmless.

Without ``PREDQ_WEBHOOK_SECRET`` the receiver asks Replicate for the secret
(``GET /v1/webhooks/default/secret``) with ``REPLICATE_API_TOKEN`` at start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping

import redis.asyncio as aioredis
import structlog
from replicate.client import Client as ReplicateClient
from replicate.webhook import Webhooks, WebhookSigningSecret, WebhookValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from producer import keys
from worker.config import WorkerConfig
from worker.logs import configure_logging

log = structlog.get_logger(__name__)
FINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
PATH = "/replicate/webhook"


def create_receiver(redis: aioredis.Redis, secret: str) -> Starlette:
    """The receiver's ASGI app, storing verified final predictions in ``redis``."""
    signing_secret = WebhookSigningSecret(key=secret)

    async def receive(request: Request) -> Response:
        body = await request.body()
        try:
            Webhooks.validate(
                headers=dict(request.headers), body=body.decode(), secret=signing_secret
            )
        except (WebhookValidationError, UnicodeDecodeError) as exc:
            log.warning("webhook.rejected", reason=type(exc).__name__)
            return JSONResponse({"detail": f"invalid webhook ({type(exc).__name__})"}, 401)
        try:
            prediction = json.loads(body)
            prediction_id, status = prediction["id"], prediction["status"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"detail": "not a prediction"}, 400)
        if status in FINAL:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.set(keys.webhook(prediction_id), body, ex=keys.WEBHOOK_TTL_S)
                pipe.publish(keys.WEBHOOK_CHANNEL, prediction_id)
                await pipe.execute()
            log.info("webhook.received", prediction_id=prediction_id, status=status)
        return Response(status_code=204)

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route(PATH, receive, methods=["POST"]), Route("/health", health)])


async def fetch_secret(config: WorkerConfig) -> str:
    """The account's webhook signing secret, asked of Replicate with the API token."""
    token = config.replicate_api_token
    client = ReplicateClient(
        api_token=token.get_secret_value() if token else None,
        base_url=config.replicate_base_url,
    )
    secret = await client.webhooks.default.async_secret()
    return str(secret.key)


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.webhook_receiver")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    config = WorkerConfig.from_env(env)
    configure_logging(config.log_level, config.log_format, secrets=config.secrets())
    secret = env.get("PREDQ_WEBHOOK_SECRET") or asyncio.run(fetch_secret(config))
    redis = aioredis.Redis.from_url(config.redis_url)

    import uvicorn

    uvicorn.run(
        create_receiver(redis, secret),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
