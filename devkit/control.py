"""The sandbox's control client: its ``/sandbox/*`` endpoints, and its prediction list.

    stats()              GET  /sandbox/stats: counters (created, polls, canceled, ...)
    faults(**settings)   POST /sandbox/faults: change settings and/or queue one-shot faults
    reset()              POST /sandbox/reset: forget predictions, counters and queued faults
    predictions()        every prediction, newest first, through Replicate's list endpoint

It blocks (each call is a local HTTP request of a millisecond or so); async callers that must not
hold their loop use ``asyncio.to_thread(control.stats)``.
"""

from __future__ import annotations

from typing import Any

import httpx

TIMEOUT_S = 10.0


class SandboxControl:
    """Control of the sandbox at ``url``; ``token`` is for its ``/v1`` list endpoint."""

    def __init__(self, url: str, token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url, timeout=TIMEOUT_S, headers=headers)

    def _json(self, response: httpx.Response) -> Any:
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._json(self._http.get("/sandbox/stats"))
        return stats

    def faults(self, **settings: Any) -> dict[str, Any]:
        current: dict[str, Any] = self._json(self._http.post("/sandbox/faults", json=settings))
        return current

    def reset(self) -> None:
        self._json(self._http.post("/sandbox/reset"))

    def predictions(self) -> list[dict[str, Any]]:
        """Every prediction the sandbox made, newest first, page by page (these requests count
        in its ``requests``, not in ``polls``)."""
        found: list[dict[str, Any]] = []
        url: str | None = "/v1/predictions"
        while url is not None:
            page = self._json(self._http.get(url))
            found += page["results"]
            url = page["next"]
        return found

    def close(self) -> None:
        self._http.close()
