"""Failure drills: inject a failure into the running deployment under load, measure what
Falcon did about it, compare with what it promises, and write the result down (issue 16).

Drills are data (:mod:`catalog`: hypothesis, injection, expectations with time bounds); the
verdicts are pure (:mod:`judge`); :mod:`runner` is the shell that talks to the deployment::

    from falcon_platform.drills import run_drill
    outcome = run_drill("kill-worker", settings, spec)
    outcome.status, [c.line() for c in outcome.checks]
"""

from falcon_platform.drills.catalog import CATALOG, drill_named
from falcon_platform.drills.model import Check, DrillDef, DrillOutcome, Expectation
from falcon_platform.drills.runner import DrillOptions, run_drill

__all__ = [
    "CATALOG",
    "Check",
    "DrillDef",
    "DrillOptions",
    "DrillOutcome",
    "Expectation",
    "drill_named",
    "run_drill",
]
