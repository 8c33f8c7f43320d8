"""The SLI store: scraped worker series and the supervisor's own, in SQLite, bounded.

Implements :class:`observability.sli_source.SLISource`. Series are named and labelled as the
Prometheus metrics (``observability.names``): counters cumulative, gauges as sampled,
histogram buckets as ``<name>_bucket`` with ``le``. High-cardinality labels (``endpoint``,
``cache``) are summed away at ingestion. Raw samples are kept for an hour, then one per
minute (counters: last value, gauges: maximum) until the retention ends::

    store = SLIStore(settings.data_dir / "sli.db", retention_s=7 * 86400)
    store.ingest_exposition(now, text, worker="w1", release="r1")
    store.record(now, names.WORKER_RSS, {"worker": "w1", "release": "r1"}, 1.3e8, kind="gauge")
    store.query(names.REQUESTS + "", now - 300, now, {"release": "r1"})

SQLite (stdlib ``sqlite3``, WAL) because the store must survive a supervisor restart and
needs no server; it is written only from the supervisor's event loop.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path

from falcon_platform.observability import names
from falcon_platform.observability.aggregate import parse_exposition
from falcon_platform.observability.sli_source import Series

#: Worker families kept (by family name as the parser reports it) and their kind.
#: ``falcon_memory_limit_bytes`` comes from the supervisor (it enforces the limit), not workers.
KEPT_FAMILIES: dict[str, str] = {
    names.REQUESTS.removesuffix("_total"): "counter",
    names.REQUEST_DURATION: "histogram",
    names.SYNTHETIC_REQUESTS.removesuffix("_total"): "counter",  # the canary judge's only
    names.SYNTHETIC_DURATION: "histogram",
    names.ERRORS.removesuffix("_total"): "counter",
    names.RSS: "gauge",
    names.INFLIGHT: "gauge",
    names.QUEUE_DEPTH: "gauge",
    names.REQUEST_LOG_PENDING: "gauge",
    names.REQUEST_LOG_LOST.removesuffix("_total"): "counter",
    names.REQUEST_LOG_WRITTEN.removesuffix("_total"): "counter",
    names.DEGRADED_RESPONSES.removesuffix("_total"): "counter",
    names.FAULTS_ACTIVE: "gauge",
    names.CONFIG_INFO: "gauge",  # alert FalconConfigChanged (a new fingerprint label value)
}
DROPPED_LABELS = frozenset({"endpoint", "cache"})
RAW_KEEP_S = 3600.0
DOWNSAMPLE_STEP_S = 60

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    kind TEXT NOT NULL,
    UNIQUE (name, labels)
);
CREATE TABLE IF NOT EXISTS samples (
    series_id INTEGER NOT NULL,
    ts REAL NOT NULL,
    value REAL NOT NULL,
    res INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ix_samples_series_ts ON samples (series_id, ts);
CREATE INDEX IF NOT EXISTS ix_samples_ts ON samples (ts);
"""


def _label_key(labels: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(labels.items())), separators=(",", ":"))


class SLIStore:
    def __init__(self, path: Path, *, retention_s: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.retention_s = retention_s
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._series: dict[tuple[str, str], int] = {
            (name, labels): sid
            for sid, name, labels in self._db.execute("SELECT id, name, labels FROM series")
        }

    def close(self) -> None:
        self._db.close()

    # --- writing -----------------------------------------------------------------------
    def _series_id(self, name: str, labels: Mapping[str, str], kind: str) -> int:
        key = (name, _label_key(labels))
        sid = self._series.get(key)
        if sid is None:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO series (name, labels, kind) VALUES (?, ?, ?)", (*key, kind)
            )
            if cur.lastrowid and cur.rowcount:
                sid = int(cur.lastrowid)
            else:
                row = self._db.execute(
                    "SELECT id FROM series WHERE name = ? AND labels = ?", key
                ).fetchone()
                sid = int(row[0])
            self._series[key] = sid
        return sid

    def record_many(
        self, ts: float, points: Iterable[tuple[str, Mapping[str, str], float, str]]
    ) -> int:
        """Store ``(name, labels, value, kind)`` points sampled at ``ts``; returns how many."""
        rows = [(self._series_id(n, labels, kind), ts, value) for n, labels, value, kind in points]
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO samples (series_id, ts, value) VALUES (?, ?, ?)", rows)
        self._db.execute("COMMIT")
        return len(rows)

    def record(
        self, ts: float, name: str, labels: Mapping[str, str], value: float, *, kind: str
    ) -> None:
        self.record_many(ts, [(name, labels, value, kind)])

    def ingest_exposition(self, ts: float, text: str, *, worker: str, release: str) -> int:
        """Keep the SLI families of one worker's /metrics text; raises ValueError if malformed."""
        return self.record_many(ts, extract_sli_points(text, worker=worker, release=release))

    # --- housekeeping ------------------------------------------------------------------
    def compact(self, now: float) -> None:
        """Downsample raw samples older than an hour; drop what is past the retention."""
        cutoff = now - RAW_KEEP_S
        self._db.execute("BEGIN")
        self._db.execute("DELETE FROM samples WHERE ts < ?", (now - self.retention_s,))
        # SQLite's bare-column rule: with MAX(ts), `value` comes from that same row (the last one).
        self._db.execute(
            """INSERT INTO samples (series_id, ts, value, res)
               SELECT s.series_id, MAX(s.ts), s.value, ? FROM samples s
               JOIN series ON series.id = s.series_id
               WHERE s.res = 0 AND s.ts < ? AND series.kind != 'gauge'
               GROUP BY s.series_id, CAST(s.ts / ? AS INTEGER)""",
            (DOWNSAMPLE_STEP_S, cutoff, DOWNSAMPLE_STEP_S),
        )
        self._db.execute(
            """INSERT INTO samples (series_id, ts, value, res)
               SELECT s.series_id, MAX(s.ts), MAX(s.value), ? FROM samples s
               JOIN series ON series.id = s.series_id
               WHERE s.res = 0 AND s.ts < ? AND series.kind = 'gauge'
               GROUP BY s.series_id, CAST(s.ts / ? AS INTEGER)""",
            (DOWNSAMPLE_STEP_S, cutoff, DOWNSAMPLE_STEP_S),
        )
        self._db.execute("DELETE FROM samples WHERE res = 0 AND ts < ?", (cutoff,))
        self._db.execute("COMMIT")

    # --- reading (SLISource) -------------------------------------------------------------
    def query(
        self,
        name: str,
        start: float,
        end: float,
        match: Mapping[str, str] | None = None,
    ) -> list[Series]:
        """Every series called ``name`` whose labels include ``match``, samples in [start, end]."""
        return _query(self._db, name, start, end, match)

    def open_reader(self) -> SLIReader:
        """A read-only view on its own connection, for a thread (WAL: readers never block the
        scraper, and the supervisor's event loop is not stalled by a long evaluation)."""
        return SLIReader(self.path)

    def sample_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0])


class SLIReader:
    """An ``SLISource`` on its own SQLite connection, usable from one thread at a time."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def query(
        self,
        name: str,
        start: float,
        end: float,
        match: Mapping[str, str] | None = None,
    ) -> list[Series]:
        return _query(self._db, name, start, end, match)

    def close(self) -> None:
        self._db.close()


def _query(
    db: sqlite3.Connection,
    name: str,
    start: float,
    end: float,
    match: Mapping[str, str] | None,
) -> list[Series]:
    found: list[Series] = []
    for sid, labels_json in db.execute(
        "SELECT id, labels FROM series WHERE name = ? ORDER BY id", (name,)
    ).fetchall():
        labels: dict[str, str] = json.loads(labels_json)
        if match and any(labels.get(k) != v for k, v in match.items()):
            continue
        samples = tuple(
            (float(ts), float(value))
            for ts, value in db.execute(
                "SELECT ts, value FROM samples WHERE series_id = ? AND ts >= ? AND ts <= ?"
                " ORDER BY ts",
                (sid, start, end),
            )
        )
        if samples:
            found.append(Series(name, labels, samples))
    return found


def extract_sli_points(
    text: str, *, worker: str, release: str
) -> list[tuple[str, dict[str, str], float, str]]:
    """The kept samples of one exposition, high-cardinality labels summed away (pure)."""
    sums: dict[tuple[str, str], tuple[dict[str, str], float, str]] = {}
    for family in parse_exposition(text, worker=worker, release=release):
        kind = KEPT_FAMILIES.get(family.name)
        if kind is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            labels = {k: v for k, v in sample.labels.items() if k not in DROPPED_LABELS}
            key = (sample.name, _label_key(labels))
            previous = sums.get(key)
            value = sample.value + (previous[1] if previous else 0.0)
            sums[key] = (labels, value, "gauge" if kind == "gauge" else "counter")
    return [(name, labels, value, kind) for (name, _), (labels, value, kind) in sums.items()]
