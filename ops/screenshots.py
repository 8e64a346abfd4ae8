"""The README's dashboard screenshots, taken from a live system: ``python -m ops.screenshots``.

Starts a private Redis, the sandbox (a little throttling, so there are retries to see), two
workers and ``predq serve``, runs a few minutes' worth of mixed jobs (images, a streamed text
model, sleeps, failures), and photographs the dashboard's pages in Debian's Chromium into
``docs/screenshots/`` (laptop and phone sizes).
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

from devkit.launch import ApiProcess, SandboxProcess, clean_env, start_worker, stop
from devkit.local_redis import LocalRedis
from tests.browser.conftest import CHROMIUM_FLAGS, chromium_path

TOKEN = "r8_predq_screenshots_sandbox_token_00"
LLM_INPUT = {"prompt": "tell me about lighthouses", "max_tokens": 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(24)
    with (
        tempfile.TemporaryDirectory(prefix="predq-shots-") as tmp,
        LocalRedis(appendonly=False) as redis,
    ):
        logs = Path(tmp)
        sandbox = SandboxProcess(["--latency", "1", "--throttle-rate", "0.08", "--retry-after",
                                  "1", "--seed", "3"], logs / "sandbox.log")  # fmt: skip
        env = {**clean_env(), "REDIS_URL": redis.url, "REPLICATE_BASE_URL": sandbox.url,
               "REPLICATE_API_TOKEN": TOKEN, "PREDQ_OUTPUT_STORE": (logs / "out").as_uri(),
               "PREDQ_CREATES_PER_MIN": "120", "PREDQ_HEARTBEAT_S": "1"}  # fmt: skip
        workers = [start_worker(env, logs / f"worker-{n}.log") for n in range(2)]
        api = ApiProcess({**env, "PREDQ_API_KEYS": key}, logs / "api.log")
        http = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {key}"})
        try:
            ids = _load(http)
            with sync_playwright() as driver:
                path = chromium_path()
                assert path, "no Chromium: apt-get install chromium"
                browser = driver.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                _sign_in(page, api.url, key)
                _shoot(page, f"{api.url}/#/", args.out / "overview.png", wait_s=6)
                _shoot(page, f"{api.url}/#/jobs", args.out / "jobs.png", whole=False)
                _shoot(page, f"{api.url}/#/job/{ids['image']}", args.out / "job-image.png")
                _shoot(page, f"{api.url}/#/job/{ids['text']}", args.out / "job-text.png")
                _shoot(page, f"{api.url}/#/job/{ids['failed']}", args.out / "job-failed.png")
                _shoot(page, f"{api.url}/#/workers", args.out / "workers.png")
                phone = browser.new_page(viewport={"width": 390, "height": 844})
                _sign_in(phone, api.url, key)
                _shoot(phone, f"{api.url}/#/", args.out / "phone-overview.png", wait_s=3)
                browser.close()
        finally:
            http.close()
            api.stop()
            stop(workers)
            sandbox.stop()
    print(f"screenshots in {args.out}")


def _enqueue(http: httpx.Client, model: str, input: dict[str, Any], **options: Any) -> str:
    response = http.post("/v1/jobs", json={"model": model, "input": input, **options})
    response.raise_for_status()
    job_id: str = response.json()["id"]
    return job_id


def _load(http: httpx.Client) -> dict[str, str]:
    """About 90 s of mixed work, spread so the per-minute charts have bars; some left queued."""
    ids = {
        "image": _enqueue(http, "sandbox/image", {"prompt": "a lighthouse", "num_outputs": 3}),
        "text": _enqueue(http, "sandbox/llm", LLM_INPUT, stream=True),
        "failed": _enqueue(http, "sandbox/fail", {"message": "the model ran out of memory"}),
    }
    for round_ in range(3):
        batch = [{"model": "sandbox/sleep", "input": {"seconds": 1 + n % 4, "n": n}}
                 for n in range(40 + 20 * round_)]  # fmt: skip
        batch += [{"model": "sandbox/fail", "input": {"message": f"bad input {n}"}}
                  for n in range(2 + round_)]  # fmt: skip
        http.post("/v1/jobs", json={"jobs": batch}).raise_for_status()
        time.sleep(30)
    http.post("/v1/jobs", json={"jobs": [{"model": "sandbox/sleep", "input": {"seconds": 20}}
                                         for _ in range(150)]}).raise_for_status()  # fmt: skip
    return ids


def _sign_in(page: Page, url: str, key: str) -> None:
    page.goto(url)
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.locator("h1", has_text="Overview").wait_for()


def _shoot(page: Page, url: str, path: Path, wait_s: float = 2, *, whole: bool = True) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(wait_s * 1000)  # a refresh or two: live charts and counts
    page.screenshot(path=str(path), full_page=whole)


if __name__ == "__main__":
    main()
