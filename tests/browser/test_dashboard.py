"""The dashboard in a real browser: sign in, watch a job run, search, previews, retry, cancel,
bulk actions, and what a read-only key may do (nothing, even when it forges the request)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from devkit.launch import ApiProcess
from tests.browser.conftest import shoot
from tests.integration.conftest import API_FULL_KEY, API_READ_KEY, Sandbox, Workers


def enqueue(api: ApiProcess, model: str, input: dict[str, Any], **options: Any) -> str:
    response = httpx.post(
        f"{api.url}/v1/jobs",
        json={"model": model, "input": input, **options},
        headers={"Authorization": f"Bearer {API_FULL_KEY}"},
        timeout=10,
    )
    response.raise_for_status()
    job_id: str = response.json()["id"]
    return job_id


def sign_in(page: Page, api: ApiProcess, key: str = API_FULL_KEY) -> None:
    page.goto(api.url)
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("h1", has_text="Overview")).to_be_visible()


def state_badge(page: Page) -> Any:
    return page.locator(".job-head .badge")


def test_a_wrong_key_is_refused_and_the_page_says_so(page: Page, api: ApiProcess) -> None:
    page.goto(api.url)
    page.get_by_label("API key").fill("not-a-key-of-this-server")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That key is not valid here.")
    cookies = page.context.cookies()
    assert not cookies


def test_a_job_goes_from_queued_to_succeeded_before_your_eyes(
    page: Page, api: ApiProcess, workers: Workers, sandbox: Sandbox
) -> None:
    sandbox.faults(latency_s=3)
    sign_in(page, api)
    [cookie] = page.context.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
    assert API_FULL_KEY not in cookie["value"]
    job_id = enqueue(api, "sandbox/llm", {"prompt": "a lighthouse", "max_tokens": 30}, stream=True)
    expect(page.locator('[data-count="queued"] .value')).to_have_text("1")
    page.goto(f"{api.url}/#/job/{job_id}")
    expect(state_badge(page)).to_have_text("queued")
    workers.start()
    expect(state_badge(page)).to_have_text("running")
    expect(page.locator("#live .progress")).to_be_visible()
    # The streamed tokens show while the job still runs (a moment the page itself reports).
    partial = page.wait_for_function(
        """() => {
            const text = document.querySelector('#output-text');
            const state = document.querySelector('.job-head .badge');
            const words = text ? text.textContent.trim().split(/\\s+/) : [];
            return state.textContent === 'running' && words.length >= 3 ? text.textContent : null;
        }"""
    ).json_value()
    shoot(page, "job-running")
    expect(state_badge(page)).to_have_text("succeeded", timeout=30_000)
    text = page.locator("#output-text").inner_text()
    assert len(text.split()) == 30  # the model's tokens, as text
    assert text.startswith(partial.strip())
    expect(page.locator("#timeline li")).to_have_count(3)  # enqueued, attempt started, succeeded
    shoot(page, "job-succeeded")
    page.goto(f"{api.url}/#/")
    expect(page.locator('[data-count="succeeded"] .value')).to_have_text("1")
    expect(page.locator('[data-count="queued"] .value')).to_have_text("0")
    shoot(page, "overview")


def test_search_finds_a_job_by_idempotency_key_and_by_prediction_id(
    page: Page, api: ApiProcess, workers: Workers
) -> None:
    workers.start()
    job_id = enqueue(api, "sandbox/echo", {"n": 1}, idempotency_key="order-1234")
    sign_in(page, api)
    search = page.get_by_role("searchbox", name="Find a job")
    search.fill("order-1234")
    search.press("Enter")
    expect(page).to_have_url(f"{api.url}/#/job/{job_id}")
    expect(state_badge(page)).to_have_text("succeeded")
    prediction_id = page.locator("dt:has-text('Prediction') + dd").inner_text()
    assert prediction_id and prediction_id != "–"
    page.goto(f"{api.url}/#/jobs")
    search.fill(prediction_id)
    search.press("Enter")
    expect(page).to_have_url(f"{api.url}/#/job/{job_id}")
    search.fill("no-such-thing")
    search.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("no-such-thing")


def test_an_image_jobs_output_is_previewed_from_its_durable_copy(
    page: Page, api: ApiProcess, workers: Workers, sandbox: Sandbox
) -> None:
    workers.start()
    job_id = enqueue(api, "sandbox/image", {"prompt": "a lighthouse", "num_outputs": 2})
    sign_in(page, api)
    page.goto(f"{api.url}/#/job/{job_id}")
    expect(state_badge(page)).to_have_text("succeeded")
    images = page.locator("#output .previews img")
    expect(images).to_have_count(2)
    for n in range(2):
        image = images.nth(n)
        expect(image).to_have_attribute("src", f"/v1/jobs/{job_id}/files/{n}")
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
        )
    sandbox.reset()  # Replicate's copies are gone: the preview comes from predq's store
    page.reload()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#output img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    shoot(page, "job-image")


def test_a_failed_job_is_retried_from_its_page_and_succeeds(
    page: Page, api: ApiProcess, workers: Workers, sandbox: Sandbox
) -> None:
    workers.start()
    sandbox.faults(queue=[{"on": "create", "fault": "error", "status": 503}])
    job_id = enqueue(api, "sandbox/echo", {"n": 7}, max_attempts=1)
    sign_in(page, api)
    page.goto(f"{api.url}/#/job/{job_id}")
    expect(state_badge(page)).to_have_text("failed")
    expect(page.locator("#output .notice")).to_contain_text("503")
    shoot(page, "job-failed")
    page.get_by_role("button", name="Retry").click()
    expect(state_badge(page)).to_have_text("succeeded")
    expect(page.locator("#output-json")).to_contain_text('"n": 7')
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    timeline = page.locator("#timeline li")
    expect(timeline).to_have_count(6)  # queued, running, failed, queued again, running, succeeded
    expect(timeline.nth(2)).to_contain_text("failed: transient (HTTP 503)")
    expect(timeline.nth(3)).to_contain_text("queued again")


def test_a_running_job_is_canceled_from_its_page(
    page: Page, api: ApiProcess, workers: Workers
) -> None:
    workers.start()
    job_id = enqueue(api, "sandbox/sleep", {"seconds": 60})
    sign_in(page, api)
    page.goto(f"{api.url}/#/job/{job_id}")
    expect(state_badge(page)).to_have_text("running")
    page.get_by_role("button", name="Cancel").click()
    expect(state_badge(page)).to_have_text("canceled")
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)


def test_bulk_cancel_of_the_queued_jobs_shown_and_bulk_retry_of_the_failed(
    page: Page, api: ApiProcess, workers: Workers, sandbox: Sandbox
) -> None:
    queued = [enqueue(api, "sandbox/echo", {"n": n}) for n in range(3)]
    sign_in(page, api)
    page.goto(f"{api.url}/#/jobs?state=queued")
    expect(page.locator("#jobs-table tbody tr[data-job]")).to_have_count(3)
    shoot(page, "jobs")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel 3 queued").click()
    expect(page.get_by_role("status")).to_have_text("Canceled 3 of 3")
    page.goto(f"{api.url}/#/jobs?state=canceled")
    expect(page.locator("#jobs-table tbody tr[data-job]")).to_have_count(3)
    workers.start()
    sandbox.faults(queue=[{"on": "create", "fault": "error", "status": 503}] * 2)
    failed = [enqueue(api, "sandbox/echo", {"n": n}, max_attempts=1) for n in range(2)]
    page.goto(f"{api.url}/#/jobs?state=failed")
    expect(page.locator("#jobs-table tbody tr[data-job]")).to_have_count(2)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Retry 2 failed").click()
    page.goto(f"{api.url}/#/jobs?state=succeeded")
    expect(page.locator("#jobs-table tbody tr[data-job]")).to_have_count(2)
    assert set(queued).isdisjoint(failed)


def test_a_read_only_key_sees_no_buttons_and_its_forged_actions_are_refused(
    page: Page, api: ApiProcess, workers: Workers, sandbox: Sandbox
) -> None:
    workers.start()
    sandbox.faults(queue=[{"on": "create", "fault": "error", "status": 503}])
    failed = enqueue(api, "sandbox/echo", {"n": 1}, max_attempts=1)
    sign_in(page, api, API_READ_KEY)
    expect(page.locator(".role")).to_have_text("read only")
    page.goto(f"{api.url}/#/job/{failed}")
    expect(state_badge(page)).to_have_text("failed")
    expect(page.locator("button", has_text="Retry")).to_have_count(0)
    page.goto(f"{api.url}/#/jobs?state=failed")
    expect(page.locator("#jobs-table tbody tr[data-job]")).to_have_count(1)
    expect(page.locator(".bulk button")).to_have_count(0)
    shoot(page, "read-only-jobs")
    # Forged: the page's own session and CSRF token, straight at the API.
    status = page.evaluate(
        """async (id) => {
            const session = await (await fetch('/session')).json();
            const r = await fetch(`/v1/jobs/${id}/retry`, {method: 'POST',
                headers: {'X-CSRF-Token': session.csrf_token}});
            return r.status;
        }""",
        failed,
    )
    assert status == 403
    assert page.evaluate("fetch('/v1/jobs').then(r => r.status)") == 200


def test_a_full_session_cannot_act_without_its_csrf_token(
    page: Page, api: ApiProcess, workers: Workers
) -> None:
    job_id = enqueue(api, "sandbox/echo", {"n": 1})
    sign_in(page, api)
    forged = "fetch(`/v1/jobs/${id}/cancel`, {method: 'POST'}).then(r => r.status)"
    assert page.evaluate(f"(id) => {forged}", job_id) == 403
    wrong = "fetch(`/v1/jobs/${id}/cancel`, {method: 'POST', headers: {'X-CSRF-Token': 'x'}})"
    assert page.evaluate(f"(id) => {wrong}.then(r => r.status)", job_id) == 403
    record = httpx.get(
        f"{api.url}/v1/jobs/{job_id}", headers={"X-API-Key": API_FULL_KEY}, timeout=10
    ).json()
    assert record["state"] == "queued"


def test_workers_page_lists_live_workers(page: Page, api: ApiProcess, workers: Workers) -> None:
    workers.start(2)
    sign_in(page, api)
    page.get_by_role("link", name="Workers", exact=True).first.click()
    rows = page.locator("#workers-table tbody tr[data-worker]")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("alive")
    shoot(page, "workers")


@pytest.mark.parametrize("path", ["#/", "#/jobs"])
def test_the_dashboard_fits_a_phone(page: Page, api: ApiProcess, path: str) -> None:
    enqueue(api, "sandbox/echo", {"n": 1})
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, api)
    page.goto(f"{api.url}/{path}")
    page.wait_for_load_state("networkidle")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px phone"
    shoot(page, f"phone-{'overview' if path == '#/' else 'jobs'}")
