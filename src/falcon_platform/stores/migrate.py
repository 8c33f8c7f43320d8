"""``python -m falcon_platform.stores.migrate URL DATA_DIR TIMEOUT_S``: upgrade one SQLite file.

What :func:`~falcon_platform.stores.database.upgrade_local` runs in a child process, so the
serving worker that needed the upgrade never imports Alembic. Exit 0 when the schema is at
head; 1 with the reason as the last line of stderr.

    python -m falcon_platform.stores.migrate sqlite:////srv/falcon/data/falcon.db /srv/falcon/data 5.0
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from falcon_platform.errors import DependencyError
from falcon_platform.stores.database import migrate, sqlite_engine


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or not args[0].startswith("sqlite"):
        print("usage: python -m falcon_platform.stores.migrate SQLITE_URL DATA_DIR TIMEOUT_S",
              file=sys.stderr)  # fmt: skip
        return 2
    url, data_dir, timeout_s = args
    try:
        migrate(sqlite_engine(url, float(timeout_s), pool_size=1), url, Path(data_dir))
    except DependencyError as exc:
        print(exc.detail, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
