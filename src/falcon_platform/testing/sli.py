"""An in-memory SLI source for pure-logic tests of alerting and canary analysis."""

from __future__ import annotations

from collections.abc import Mapping

from falcon_platform.observability.sli_source import Series


class FakeSLISource:
    def __init__(self) -> None:
        self._data: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}

    def add(self, name: str, labels: Mapping[str, str], ts: float, value: float) -> None:
        key = (name, tuple(sorted(labels.items())))
        points = self._data.setdefault(key, [])
        points.append((ts, value))
        points.sort()

    def query(
        self,
        name: str,
        start: float,
        end: float,
        match: Mapping[str, str] | None = None,
    ) -> list[Series]:
        found = []
        for (series_name, labels), points in self._data.items():
            label_map = dict(labels)
            if series_name != name:
                continue
            if match and any(label_map.get(k) != v for k, v in match.items()):
                continue
            found.append(Series(name, label_map, tuple(p for p in points if start <= p[0] <= end)))
        return found
