"""Falcon: an ML inference platform.

Serves a model over HTTP, keeps the service alive on one machine, makes every
change safe, notices trouble, and writes the postmortem when trouble happens
anyway. Import name is ``falcon_platform`` (``falcon`` is taken on PyPI); the
command is ``falcon``.
"""

__version__ = "0.1.0"
