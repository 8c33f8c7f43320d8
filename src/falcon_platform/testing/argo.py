"""How Argo Rollouts judges one analysis measurement, for tests of the rendered templates.

No Argo controller runs on the test machines, so tests replay its decision on a query's
result: ``measurement_phase`` follows ``utils/evaluate/evaluate.go`` (EvaluateResult), and
``metric_phase`` follows ``analysis/analysis.go`` (assessMetricFailureInconclusiveOrError)::

    >>> measurement_phase(None, "len(result) > 0 && result[0] > 0.1", [0.12])
    'Failed'
    >>> measurement_phase(None, "len(result) > 0 && result[0] > 0.1", [])
    'Successful'
    >>> metric_phase(["Successful", "Failed"], failure_limit=0)
    'Failed'

Conditions are Argo's expression language (expr-lang); only the subset Falcon renders is
read here: ``result``, ``result[i]``, ``len(result)``, numbers, comparisons, ``&&``, ``||``,
``!``, ``true``/``false`` and parentheses. Anything else raises ``ValueError``, so a template
that starts using more fails its tests instead of being misread.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|(?P<op>&&|\|\||[<>]=?|==|!=|!|\(|\)|\[|\])"
    r"|(?P<name>[A-Za-z_]\w*))"
)
_WORDS = {"&&": " and ", "||": " or ", "!": " not ", "true": "True", "false": "False"}
_NAMES = {"result", "len", "true", "false"}


class ConditionError(Exception):
    """What Argo records as an Error measurement: the condition could not be evaluated."""


def _python(condition: str) -> str:
    out, pos = [], 0
    while pos < len(condition):
        match = _TOKEN.match(condition, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"unsupported condition text at {condition[pos:]!r}")
        token = match.group().strip()
        if match.group("name") and token not in _NAMES:
            raise ValueError(f"unsupported name {token!r} in {condition!r}")
        out.append(_WORDS.get(token, token))
        pos = match.end()
    return " ".join(out)


def evaluate(condition: str, result: Sequence[float]) -> bool:
    """The condition's value for one measurement; ``ConditionError`` where Argo errs."""
    code = _python(condition)
    ast.parse(code, mode="eval")  # a syntax error is the template's, not Argo's
    try:
        value = eval(code, {"__builtins__": {}}, {"result": list(result), "len": len})  # noqa: S307 - tokens checked above
    except (IndexError, TypeError) as exc:
        raise ConditionError(f"{condition!r} on {list(result)}: {exc}") from exc
    if not isinstance(value, bool):
        raise ConditionError(f"{condition!r} is not a boolean: {value!r}")
    return value


def measurement_phase(
    success_condition: str | None, failure_condition: str | None, result: Sequence[float]
) -> str:
    """Successful, Failed, Inconclusive or Error, as EvaluateResult decides."""
    try:
        success = evaluate(success_condition, result) if success_condition else False
        failure = evaluate(failure_condition, result) if failure_condition else False
    except ConditionError:
        return "Error"
    if not success_condition and not failure_condition:
        return "Successful"
    if success_condition and not failure_condition:
        failure = not success
    elif failure_condition and not success_condition:
        success = not failure
    if failure:
        return "Failed"
    return "Successful" if success else "Inconclusive"


def metric_phase(
    phases: Sequence[str],
    *,
    failure_limit: int = 0,
    inconclusive_limit: int = 0,
    consecutive_error_limit: int = 4,
) -> str:
    """A metric's phase after these measurements: Failed once failures exceed the limit, then
    Inconclusive, then Error (consecutive), else Running (Argo keeps measuring)."""
    errors = 0
    for phase in reversed(phases):
        if phase != "Error":
            break
        errors += 1
    if errors > consecutive_error_limit:
        return "Error"
    if phases.count("Inconclusive") > inconclusive_limit:
        return "Inconclusive"
    if phases.count("Failed") > failure_limit:
        return "Failed"
    return "Running"
