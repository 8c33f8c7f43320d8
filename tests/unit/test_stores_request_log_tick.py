"""The request log's one write per loop tick: every row on disk before any of its responses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from falcon_platform.config.settings import Settings
from falcon_platform.errors import OverloadedError
from falcon_platform.stores.request_log import SpoolingRequestLog
from falcon_platform.stores.segments import OPEN_SUFFIX, encode_record, parse_segment
from falcon_platform.testing.stores import sample_record as record


def spool(tmp_path: Path, **overrides: object) -> SpoolingRequestLog:
    return SpoolingRequestLog(Settings(home=tmp_path, **overrides))  # type: ignore[arg-type]


def on_disk(log: SpoolingRequestLog) -> list[str]:
    rows = []
    for path in sorted(log.directory.glob(f"*{OPEN_SUFFIX}")):
        rows += [row["request_id"] for row in parse_segment(path.read_bytes()).rows]
    return rows


async def test_rows_of_one_tick_share_one_write_and_are_on_disk_when_it_resolves(
    tmp_path: Path,
) -> None:
    log = spool(tmp_path)
    ticks = [log.append_in_tick(record(i)) for i in range(50)]
    assert all(t is ticks[0] for t in ticks), "one future for the whole tick"
    assert on_disk(log) == [], "nothing is written before the tick ends"
    await ticks[0]
    assert on_disk(log) == [f"req-{i:06d}" for i in range(50)]
    assert log.counters().rows_pending == 50
    nxt = log.append_in_tick(record(50))
    assert nxt is not ticks[0], "the next tick gets its own write"
    await nxt
    assert len(on_disk(log)) == 51
    log.writer.close()


async def test_rows_queued_in_a_tick_count_against_the_disk_budget_at_once(
    tmp_path: Path,
) -> None:
    log = spool(tmp_path)
    size = len(encode_record(record(0)))
    log.account.budget_bytes = 3 * size + size // 2  # room for three rows
    tick = log.append_in_tick(record(0))
    log.append_in_tick(record(1))
    log.append_in_tick(record(2))
    with pytest.raises(OverloadedError, match="disk budget"):
        log.append_in_tick(record(3))
    await tick
    assert on_disk(log) == ["req-000000", "req-000001", "req-000002"]
    log.writer.close()


async def test_a_failed_write_fails_every_request_of_the_tick(tmp_path: Path) -> None:
    log = spool(tmp_path)
    log.directory.parent.mkdir(parents=True, exist_ok=True)
    log.directory.write_bytes(b"")  # a file where the spool directory should be: mkdir fails
    ticks = [log.append_in_tick(record(i)) for i in range(3)]
    results = await asyncio.gather(*ticks, return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results), results
    assert log.counters().rows_pending == 0


async def test_close_writes_what_the_tick_queued(tmp_path: Path) -> None:
    log = spool(tmp_path)
    tick = log.append_in_tick(record(7))
    log.write_tick()  # what close() does first
    assert tick.done()
    assert on_disk(log) == ["req-000007"]
    log.writer.close()
