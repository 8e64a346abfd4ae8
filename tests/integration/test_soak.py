"""The soak at 500 jobs (``make soak`` runs 5,000): workers SIGKILLed, Redis restarted, Replicate
throttling and failing; every job must succeed, once, with nothing lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.soak import run_soak

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
def test_soak_500_jobs(tmp_path: Path) -> None:
    report = run_soak(500, workers=3, seed=11, workdir=tmp_path, timeout_s=150)
    print(report.render())
    assert report.lost == []
    assert report.duplicates == 0
    assert report.created == 500
    assert report.states == {"succeeded": 500}
    assert len(report.recovery_s) > 0  # the kills did hit running jobs
    assert max(report.recovery_s) < 30
    assert report.sandbox["throttled"] > 0 and report.sandbox["server_errors"] > 0
