"""``python -m falcon_platform.runtime worker ...``: how the supervisor starts a worker.

Equivalent to ``falcon worker ...`` without depending on the console script being on PATH.
"""

from falcon_platform.cli.main import run

if __name__ == "__main__":
    run()
