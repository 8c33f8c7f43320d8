"""Request-log segments: encoding, torn lines, rotation, the disk budget, abandoned files."""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import astuple, replace
from pathlib import Path

import orjson
import pytest

from falcon_platform.errors import OverloadedError
from falcon_platform.stores.segments import (
    CLOSED_SUFFIX,
    OPEN_SUFFIX,
    SegmentWriter,
    SpoolAccount,
    claim_abandoned,
    closed_segments,
    encode_record,
    encode_row,
    parse_segment,
)
from falcon_platform.testing.stores import sample_record as record
from falcon_platform.testing.stores import varied_records


def test_a_line_is_the_dataclass_as_json_whether_encoded_from_the_record_or_its_fields() -> None:
    """The serving path encodes the fields without building the record; the segment bytes
    must be what orjson gives for the dataclass itself (the format before that change)."""
    rows = [*varied_records(), replace(record(3), latency_ms=1e-05, ts=1_767_225_600.000123)]
    for row in rows:
        expected = orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
        assert encode_record(row) == expected
        assert encode_row(*astuple(row)) == expected


def test_encoded_record_round_trips_through_parse() -> None:
    data = encode_record(record(1)) + encode_record(record(2))
    parsed = parse_segment(data)
    assert [r["request_id"] for r in parsed.rows] == ["req-000001", "req-000002"]
    assert parsed.rows[0]["prediction"] == "positive"
    assert not parsed.torn_tail
    assert parsed.corrupt == 0


def test_torn_last_line_is_ignored_not_counted_as_corrupt() -> None:
    data = encode_record(record(1)) + encode_record(record(2))[:17]
    parsed = parse_segment(data)
    assert [r["request_id"] for r in parsed.rows] == ["req-000001"]
    assert parsed.torn_tail
    assert parsed.corrupt == 0


def test_corrupt_middle_line_is_counted() -> None:
    data = encode_record(record(1)) + b"{garbage\n" + encode_record(record(2))
    parsed = parse_segment(data)
    assert len(parsed.rows) == 2
    assert parsed.corrupt == 1


def test_writer_rotates_by_size_and_counts_pending_rows_and_bytes(tmp_path: Path) -> None:
    account = SpoolAccount(budget_bytes=1 << 20)
    writer = SegmentWriter(tmp_path, account, max_bytes=1000, max_age_s=60)
    lines = [encode_record(record(i)) for i in range(10)]
    for line in lines:
        writer.append(line)
    writer.rotate()
    segments = closed_segments(tmp_path)
    assert len(segments) >= 2, "1000-byte segments must rotate several times"
    shipped = [r["request_id"] for p in segments for r in parse_segment(p.read_bytes()).rows]
    assert shipped == [f"req-{i:06d}" for i in range(10)], "order is kept across segments"
    assert account.rows_pending == 10
    assert account.disk_bytes == sum(len(line) for line in lines)
    assert sum(rows for rows, _ in account.segments.values()) == 10


def test_writer_rotates_by_age_only_when_it_holds_rows(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path, SpoolAccount(budget_bytes=1 << 20), max_age_s=0.05)
    writer.rotate_if_due(time.monotonic() + 1)
    assert closed_segments(tmp_path) == []
    writer.append(encode_record(record(1)))
    writer.rotate_if_due(time.monotonic())
    assert closed_segments(tmp_path) == [], "younger than max_age: stays open"
    writer.rotate_if_due(time.monotonic() + 1)
    assert len(closed_segments(tmp_path)) == 1


def test_append_refuses_with_overloaded_when_the_budget_is_spent(tmp_path: Path) -> None:
    line = encode_record(record(1))
    account = SpoolAccount(budget_bytes=len(line) * 3)
    writer = SegmentWriter(tmp_path, account)
    for _ in range(3):
        writer.append(line)
    with pytest.raises(OverloadedError) as info:
        writer.append(line)
    assert info.value.retry_after_s > 0
    assert "disk budget" in info.value.detail
    assert account.rows_pending == 3, "the refused row was never counted as taken"


def test_budget_warning_is_logged_once_at_80_percent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    line = encode_record(record(1))
    writer = SegmentWriter(tmp_path, SpoolAccount(budget_bytes=len(line) * 10))
    for _ in range(10):
        writer.append(line)
    warnings = [
        r
        for r in caplog.records
        if getattr(r, "fields", {}).get("event") == "request_log_disk_budget_high"
    ]
    assert len(warnings) == 1


def test_claim_abandoned_takes_unlocked_open_segments_but_never_a_live_one(tmp_path: Path) -> None:
    dead = tmp_path / f"00000000000000000001-1-000001{OPEN_SUFFIX}"
    dead.write_bytes(encode_record(record(1)))
    live = tmp_path / f"00000000000000000002-2-000001{OPEN_SUFFIX}"
    live.write_bytes(encode_record(record(2)))
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        claimed = claim_abandoned(tmp_path)
    finally:
        os.close(fd)
    assert [p.name for p in claimed] == [dead.with_suffix(CLOSED_SUFFIX).name]
    assert live.exists()
