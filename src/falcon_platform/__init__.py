"""Falcon: an ML inference platform.

Serves a model over HTTP, keeps the service alive on one machine, gates every
change, and notices trouble (alerts, and a journal of every event). Import name is ``falcon_platform`` (``falcon`` is taken on PyPI); the
command is ``falcon``.
"""

__version__ = "0.1.0"
