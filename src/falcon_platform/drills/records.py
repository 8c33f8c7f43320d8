"""What a drill leaves behind: the request-log check, the ``drill`` journal row, the reports.

The journal and the request log are read and written through the deployment's own database
(``FALCON_DATABASE_URL``, else ``<FALCON_HOME>/data/falcon.db``), as ``falcon up``'s gate
refusal does: the CLI runs on the deployment's machine with its settings::

    lost, why = count_rows_lost(settings, "drill-kill-worker-1a2b3c4d-", ok_ids)
    paths = write_reports(outcome, drill, settings.data_dir / "drills", extra=Path("out.md"))
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import func, select

from falcon_platform.config.settings import Settings
from falcon_platform.drills.model import DrillDef, DrillOutcome
from falcon_platform.drills.report import render_markdown
from falcon_platform.events.journal import EventKind, SqlEventJournal
from falcon_platform.files import write_atomic
from falcon_platform.stores.database import make_engine
from falcon_platform.stores.schema import request_log

ROWS_WAIT_S = 20.0  # rows are flushed in batches (and shipped after a kill): wait for them


def count_rows_lost(
    settings: Settings, prefix: str, ok_ids: Sequence[str], *, wait_s: float = ROWS_WAIT_S
) -> tuple[int | None, str]:
    """2xx answers (by client X-Request-ID) without exactly one request-log row.

    Polls until none is missing or ``wait_s`` passes. (None, why) when the log cannot be read.
    """
    if not ok_ids:
        return 0, ""
    try:
        engine = make_engine(settings, pool_size=1)
    except Exception as exc:
        return None, f"request log not readable: {exc}"
    wanted = set(ok_ids)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            query = (
                select(request_log.c.client_request_id, func.count())
                .where(request_log.c.client_request_id.like(prefix + "%"))
                .group_by(request_log.c.client_request_id)
            )
            with engine.connect() as conn:
                rows: dict[str, int] = {str(r[0]): int(r[1]) for r in conn.execute(query)}
            lost = sum(1 for rid in wanted if rows.get(rid) != 1)
            if lost == 0 or time.monotonic() >= deadline:
                if not rows:
                    return None, (
                        f"none of the {len(wanted)} answered requests is in {engine.url!r}: "
                        "is this the deployment's database (FALCON_HOME / FALCON_DATABASE_URL)?"
                    )
                return lost, ""
            time.sleep(0.5)
    except Exception as exc:
        return None, f"request log not readable: {type(exc).__name__}: {exc}"
    finally:
        engine.dispose()


def journal_drill(settings: Settings, outcome: DrillOutcome) -> None:
    """One ``drill`` row in the deployment's journal (best effort: the report still stands)."""
    try:
        engine = make_engine(settings, pool_size=1)
        try:
            SqlEventJournal(engine).record(
                EventKind.DRILL,
                details={
                    k: v for k, v in outcome.to_dict().items() if k not in ("timeline", "reports")
                },
                ts=outcome.finished_at,
            )
        finally:
            engine.dispose()
    except Exception as exc:
        outcome.measured["journal_error"] = f"{type(exc).__name__}: {exc}"


def write_reports(
    outcome: DrillOutcome, drill: DrillDef | None, directory: Path, extra: Path | None = None
) -> list[str]:
    """Markdown + JSON into ``directory`` (and at ``extra``/``extra.json``); the paths."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(outcome.started_at or time.time()))
    targets = [directory / f"{stamp}-{outcome.name}.md"]
    if extra is not None:
        targets.append(extra)
    paths = []
    for md in targets:
        js = md.with_suffix(".json") if md.suffix == ".md" else md.with_name(md.name + ".json")
        paths += [str(md), str(js)]
    outcome.report_paths = paths
    text = render_markdown(outcome, drill)
    body = json.dumps({**outcome.to_dict(), "drill": drill.to_dict() if drill else None}, indent=2)
    for md in targets:
        md.parent.mkdir(parents=True, exist_ok=True)
        js = md.with_suffix(".json") if md.suffix == ".md" else md.with_name(md.name + ".json")
        write_atomic(md, text)
        write_atomic(js, body + "\n")
    return paths
