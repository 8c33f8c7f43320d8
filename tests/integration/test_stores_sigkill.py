"""A worker process SIGKILLed mid-write loses no acknowledged request-log row.

The child appends rows through the real stores and prints each request id only after
``append`` returned (the point where the server would send the response). After SIGKILL,
a torn half line is added to its open segment (what a cut write would leave), then the
supervisor's ``ship_orphans`` must ship every acknowledged row exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from falcon_platform.config.settings import Settings
from falcon_platform.stores import database
from falcon_platform.stores.request_log import ship_orphans
from falcon_platform.stores.schema import request_log

pytestmark = pytest.mark.integration

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from falcon_platform.config.settings import Settings
    from falcon_platform.stores.factory import build_stores
    from falcon_platform.testing.stores import sample_record

    async def main() -> None:
        stores = build_stores(Settings())
        await stores.start()
        i = 0
        while True:
            stores.request_log.append(sample_record(i, worker="w9"))
            sys.stdout.write(f"req-{i:06d}\\n")
            sys.stdout.flush()
            i += 1
            if i % 100 == 0:
                await asyncio.sleep(0.01)  # let the shipper ship some, so both paths are used

    asyncio.run(main())
    """
)


def test_sigkilled_writer_leaves_no_acknowledged_row_behind(tmp_path: Path) -> None:
    env = {**os.environ, "FALCON_HOME": str(tmp_path), "FALCON_WORKER_ID": "w9"}
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE)
    assert child.stdout is not None
    acked: list[str] = []
    deadline = time.monotonic() + 30
    while len(acked) < 3000 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        acked.append(line.decode().strip())
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    with child.stdout:  # closed here, not left to the garbage collector (ResourceWarning)
        tail = child.stdout.readlines()
    acked.extend(line.decode().strip() for line in tail if line.endswith(b"\n"))
    assert len(acked) >= 3000, "the child did not get going"

    spool = tmp_path / "spool" / "w9"
    open_segments = sorted(spool.glob("*.open"))
    if open_segments:
        with open_segments[-1].open("ab") as f:
            f.write(b'{"request_id": "torn-never-acknowledged", "ts": 1')  # a cut write
    settings = Settings(home=tmp_path)
    report = ship_orphans(settings, "w9")
    assert report.segments_left == 0
    assert list(spool.iterdir()) == []

    engine = database.make_engine(settings)
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(select(request_log.c.request_id))]
        assert conn.execute(select(func.count()).select_from(request_log)).scalar_one() == len(
            set(ids)
        )
    engine.dispose()
    missing = set(acked) - set(ids)
    assert not missing, f"{len(missing)} acknowledged rows lost, e.g. {sorted(missing)[:3]}"
    assert "torn-never-acknowledged" not in ids
