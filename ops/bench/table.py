"""The bench's table: rows (``Result``), their targets (``Target``, ``Check``), and printing it.

A row with several targets adds a ``Check`` per extra measurement; ``render`` prints the header
lines, the table, then each row's notes. ``machine_facts`` are the header's machine lines.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

_SYMBOLS = {">=": "≥", "<=": "≤", "<": "<"}


def fmt(value: float) -> str:
    """A number with as many digits as it deserves: 12,345 / 123 / 80 / 12.3 / 1.23."""
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


@dataclass(frozen=True)
class Target:
    """``measured <op> value``, e.g. ``Target(">=", 3000, "jobs/s")``.

    A unit starting with ``%`` is a share: its gap is told in percentage points.
    """

    op: Literal[">=", "<=", "<"]
    value: float
    unit: str

    def met(self, measured: float) -> bool:
        if self.op == ">=":
            return measured >= self.value
        if self.op == "<=":
            return measured <= self.value
        return measured < self.value

    def _amount(self, value: float) -> str:
        if self.unit.startswith("%"):
            return f"{fmt(value)}{self.unit}"
        return f"{fmt(value)} {self.unit}"

    def text(self) -> str:
        return f"{_SYMBOLS[self.op]} {self._amount(self.value)}"

    def gap(self, measured: float) -> str:
        """How far from the target: ``32% margin``, ``360 jobs/s short (-12%)``, or in points
        for shares: ``14 points margin``, ``6 points short``; against a target of zero, no share:
        ``""`` when met, ``3 over`` when not."""
        diff = abs(measured - self.value)
        word = "margin" if self.met(measured) else ("short" if self.op == ">=" else "over")
        if self.unit.startswith("%"):
            return f"{fmt(diff)} points {word}"
        if not self.value:
            return "" if self.met(measured) else f"{fmt(diff)} {word}"
        share = diff / self.value * 100 if self.value else 0.0
        if self.met(measured):
            return f"{share:.0f}% margin"
        sign = "-" if self.op == ">=" else "+"
        return f"{fmt(diff)} {self.unit} {word} ({sign}{share:.0f}%)"


def _verdict(target: Target, measured: float) -> str:
    gap = target.gap(measured)
    if target.met(measured):
        return f"met ({gap})" if gap else "met"
    return f"NOT MET: {gap}"


@dataclass(frozen=True)
class Check:
    """One more measurement of a row, against a target of its own (shown on a line of its own
    in the row's measured, target and met? cells, below the row's main measurement); ``shown``
    replaces the default ``measured unit`` text."""

    measured: float
    unit: str
    target: Target
    shown: str | None = None

    def text(self) -> str:
        return self.shown if self.shown is not None else f"{fmt(self.measured)} {self.unit}"


@dataclass
class Result:
    """One row of the table. ``shown`` replaces the default ``measured unit`` text; ``checks``
    are further measurements with targets of their own; the row is met when all are."""

    name: str = ""
    measured: float | None = None
    unit: str = ""
    target: Target | None = None
    shown: str | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    checks: list[Check] = field(default_factory=list)

    def measured_text(self) -> str:
        if self.error is not None:
            return "-"
        main = self.shown if self.shown is not None else f"{fmt(self.measured or 0.0)} {self.unit}"
        return "\n".join([main.strip(), *(check.text() for check in self.checks)])

    def target_text(self) -> str:
        main = self.target.text() if self.target is not None else "none (reported)"
        return "\n".join([main, *(check.target.text() for check in self.checks)])

    def verdict(self) -> str:
        if self.error is not None:
            return "FAILED (see notes)"
        main = "-"
        if self.target is not None and self.measured is not None:
            main = _verdict(self.target, self.measured)
        return "\n".join([main, *(_verdict(c.target, c.measured) for c in self.checks)])

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and (self.target is None or self.measured is None or self.target.met(self.measured))
            and all(check.target.met(check.measured) for check in self.checks)
        )


def render(console: Console, results: list[Result], header: list[str]) -> None:
    """Print the header lines, the table, then each row's notes (as plain text, no markup)."""

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    for line in header:
        say(line)
    table = Table()
    for column in ("#", "measurement", "measured", "target", "met?"):
        table.add_column(column, overflow="fold")
    for n, result in enumerate(results, 1):
        cells = (str(n), result.name, result.measured_text(), result.target_text(),
                 result.verdict())  # fmt: skip
        table.add_row(*(Text(cell) for cell in cells))
    console.print(table)
    say("notes:")
    for n, result in enumerate(results, 1):
        for line in ([result.error] if result.error else []) + result.notes:
            say(f"  {n}. {line}")


def machine_facts(redis_version: str) -> list[str]:
    """The machine, Python and library versions the numbers were measured with."""
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("arq", "redis", "hiredis", "replicate", "httpx")
    )
    return [
        f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}",
        f"Python {platform.python_version()} ({sys.implementation.name}), "
        f"Redis {redis_version} (private redis-server, no persistence), {versions}",
    ]
