"""The connection table's decisions (cap, eviction order, refusal) and the cap arithmetic."""

from __future__ import annotations

import pytest

from falcon_platform.worker import connections
from falcon_platform.worker.connections import ConnectionTable, connection_cap


class FakeConnection:
    def __init__(self, name: str, *, busy: bool = False) -> None:
        self.name, self.busy, self.evicted = name, busy, False

    def evictable(self) -> bool:
        return not self.busy

    def evict(self) -> None:
        self.evicted = True


@pytest.mark.parametrize(
    ("setting", "nofile", "in_use", "reserve", "cap"),
    [
        (4096, 20_000, 40, 128, 4096),  # the setting rules
        (4096, 1024, 40, 128, 856),  # 1024 - 40 - 128
        (4096, 150, 40, 128, 0),  # nothing left: a boot failure
        (10, 1_000_000, 10, 16, 10),
    ],
)
def test_cap_is_the_setting_bounded_by_descriptors_less_the_reserve(
    setting: int, nofile: int, in_use: int, reserve: int, cap: int
) -> None:
    assert connection_cap(setting, nofile, in_use, reserve) == cap


def test_under_the_cap_every_connection_is_admitted() -> None:
    table = ConnectionTable(3)
    conns = [FakeConnection(n) for n in "abc"]
    assert all(table.admit(c) for c in conns)  # type: ignore[arg-type]
    assert len(table) == 3
    assert not any(c.evicted for c in conns)


def test_at_the_cap_the_least_recently_useful_idle_one_is_evicted() -> None:
    table = ConnectionTable(3)
    a, b, c, d = (FakeConnection(n) for n in "abcd")
    for conn in (a, b, c):
        table.admit(conn)  # type: ignore[arg-type]
    table.touch(a)  # a completed a request: the back of the line
    assert table.admit(d)  # type: ignore[arg-type]
    assert (a.evicted, b.evicted, c.evicted) == (False, True, False)
    assert table.stats.closed["evicted"] == 1
    assert table.stats.open() == 3


def test_busy_connections_are_never_evicted_and_a_full_busy_table_refuses() -> None:
    table = ConnectionTable(2)
    busy, idle = FakeConnection("busy", busy=True), FakeConnection("idle")
    table.admit(busy)  # type: ignore[arg-type]
    table.admit(idle)  # type: ignore[arg-type]
    assert table.admit(FakeConnection("new"))  # type: ignore[arg-type]
    assert (busy.evicted, idle.evicted) == (False, True)
    idle.busy = True
    table.remove(idle)
    table.admit(FakeConnection("other", busy=True))  # type: ignore[arg-type]
    assert not table.admit(FakeConnection("late"))  # type: ignore[arg-type]
    assert table.stats.closed["refused"] == 1


def test_the_search_for_an_idle_connection_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections, "EVICTION_SCAN", 4)
    table = ConnectionTable(10)
    for i in range(9):
        table.admit(FakeConnection(f"busy{i}", busy=True))  # type: ignore[arg-type]
    late_idle = FakeConnection("idle")
    table.admit(late_idle)  # type: ignore[arg-type]  (10th: past the scan bound)
    assert not table.admit(FakeConnection("new"))  # type: ignore[arg-type]
    assert not late_idle.evicted
