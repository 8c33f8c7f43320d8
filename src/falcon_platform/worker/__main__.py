"""``python -m falcon_platform.worker``: how the supervisor starts a worker (no CLI imports)."""

import sys

from falcon_platform.worker.main import main

if __name__ == "__main__":
    sys.exit(main())
