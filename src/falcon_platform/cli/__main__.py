"""``python -m falcon_platform.cli ...``: the ``falcon`` command without its console script on PATH."""

from falcon_platform.cli.main import run

if __name__ == "__main__":
    run()
