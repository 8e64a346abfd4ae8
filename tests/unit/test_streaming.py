"""A job's events, in-process: a streaming job's tokens relayed live and in order, late readers,
a hand-over that neither loses nor repeats a token, and wait() woken by the final transition."""

from __future__ import annotations

import asyncio
import signal

from devkit.wait import eventually
from producer.events import FinalEvent, JobEvent, OutputEvent, ProgressEvent, StateEvent
from producer.models import JobState
from tests.unit.conftest import InProcessWorkers

PROMPT = {"prompt": "tell me about lighthouses", "max_tokens": 30}


async def collect(workers: InProcessWorkers, job_id: str, after: str = "0") -> list[JobEvent]:
    return [event async for event in workers.producer.stream(job_id, after=after)]


def tokens(events: list[JobEvent]) -> list[str]:
    return [e.output for e in events if isinstance(e, OutputEvent)]


async def test_a_streaming_jobs_tokens_arrive_in_order_before_the_final_record(
    workers: InProcessWorkers,
) -> None:
    await workers.faults(latency_s=0.6)
    async with workers.served(), workers.running():
        # The stream lags the polls: the final state must wait for the last tokens.
        lagging = {**PROMPT, "stream_lag_s": 0.3}
        job = await workers.producer.enqueue("sandbox/llm", lagging, stream=True)
        events = await asyncio.wait_for(collect(workers, job.id), 10)
    final = events[-1]
    assert isinstance(final, FinalEvent)
    assert final.record.state is JobState.SUCCEEDED
    assert tokens(events) == final.record.output
    assert len(tokens(events)) == 30
    states = [e.state for e in events if isinstance(e, StateEvent)]
    assert states == [JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED]
    assert any(isinstance(e, ProgressEvent) for e in events)
    last_output = max(i for i, e in enumerate(events) if isinstance(e, OutputEvent))
    final_state = next(i for i, e in enumerate(events) if getattr(e, "state", None) == "succeeded")
    assert last_output < final_state  # every token before the final state
    assert [e.id for e in events[:-1]] == sorted(e.id for e in events[:-1])


async def test_a_late_reader_gets_what_it_missed_then_the_rest(
    workers: InProcessWorkers,
) -> None:
    await workers.faults(latency_s=1.0)
    async with workers.served(), workers.running():
        job = await workers.producer.enqueue("sandbox/llm", PROMPT, stream=True)
        early = asyncio.create_task(collect(workers, job.id))

        async def half_streamed() -> bool:
            return len(tokens(await collect_so_far(workers, job.id))) >= 15

        await eventually(half_streamed, timeout_s=10)
        assert not early.done()  # the job is still streaming
        late = await asyncio.wait_for(collect(workers, job.id), 10)
        first = await early
    assert tokens(late) == tokens(first)
    assert len(tokens(late)) == 30


async def collect_so_far(workers: InProcessWorkers, job_id: str) -> list[JobEvent]:
    """The events stored so far (without waiting for more)."""
    raw = await workers.redis.xrange(f"predq:events:{job_id}")
    from producer.events import parse_entry

    return [parse_entry(entry_id, fields) for entry_id, fields in raw]


async def test_a_hand_over_mid_stream_neither_loses_nor_repeats_a_token(
    workers: InProcessWorkers,
) -> None:
    await workers.faults(latency_s=1.5)
    async with workers.served():
        async with workers.running(PREDQ_SHUTDOWN_GRACE_S="0") as leaving:
            job = await workers.producer.enqueue("sandbox/llm", PROMPT, stream=True)
            reader = asyncio.create_task(collect(workers, job.id))

            async def some_streamed() -> bool:
                return len(tokens(await collect_so_far(workers, job.id))) >= 5

            await eventually(some_streamed, timeout_s=10)
            leaving.handle_sig_wait_for_completion(signal.SIGTERM)
            handed = await workers.record_when(job.id, lambda r: r.state is JobState.QUEUED)
        assert 5 <= len(tokens(await collect_so_far(workers, job.id))) < 30
        assert handed.stream_last_id is not None
        async with workers.running():
            events = await asyncio.wait_for(reader, 15)
    final = events[-1]
    assert isinstance(final, FinalEvent)
    assert final.record.state is JobState.SUCCEEDED
    assert tokens(events) == final.record.output
    assert workers.stats()["created"] == 1


async def test_wait_is_woken_by_the_final_transition_not_by_polling(
    workers: InProcessWorkers,
) -> None:
    job = await workers.producer.enqueue("sandbox/echo", {"x": 1})
    waiting = asyncio.create_task(workers.producer.wait(job.id, timeout_s=10))
    await asyncio.sleep(0.2)  # the waiter is parked: it read the record once, and waits
    assert not waiting.done()
    await workers.producer.cancel(job.id)  # a final transition publishes the job's id
    record = await asyncio.wait_for(waiting, 1)
    assert record.state is JobState.CANCELED


async def test_a_retried_jobs_stream_goes_past_its_old_failure(workers: InProcessWorkers) -> None:
    # Fails for good (a storage cap), is retried, succeeds: read from the start, the stream
    # neither ends at the old failure nor leaves out the second run.
    [failed] = await workers.run(
        ("sandbox/video", {"size_bytes": 300_000}), env={"PREDQ_OUTPUT_MAX_BYTES": "100000"}
    )
    assert failed.state is JobState.FAILED
    await workers.producer.retry(failed.id)
    reading = asyncio.create_task(collect(workers, failed.id))
    await asyncio.sleep(0.2)
    assert not reading.done()  # queued again: not the end
    await workers.run()
    events = await asyncio.wait_for(reading, 10)
    final = events[-1]
    assert isinstance(final, FinalEvent)
    assert final.record.state is JobState.SUCCEEDED
    states = [e.state for e in events if isinstance(e, StateEvent)]
    assert states[-1] is JobState.SUCCEEDED
    assert JobState.FAILED in states
    settled = await collect(workers, failed.id)  # read after the end: the same story
    assert isinstance(settled[-1], FinalEvent)
    assert [e.id for e in settled[:-1]] == [e.id for e in events[:-1]]
