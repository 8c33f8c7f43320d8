"""What counts as a debug or fault switch, shared by the loader, the gate and the lint hook.

The seed incident began with ``DEBUG_MEMORY_GROWTH=true`` in a production ``.env``.
Falcon has exactly one sanctioned switch, ``FALCON_FAULTS`` (read only by
``falcon_platform.chaos``); any other variable whose *name* looks like a debug,
fault or leak switch is flagged wherever it appears::

    >>> is_switch_name("DEBUG_MEMORY_GROWTH"), is_switch_name("FALCON_PROFILE")
    (True, False)
    >>> is_enabled("false"), is_enabled("1")
    (False, True)
"""

from __future__ import annotations

import re

# Word-bounded on "_" so FALCON_PROFILE or REDIS_TIMEOUT do not match, but
# DEBUG, APP_DEBUG, DEBUG_MEMORY_GROWTH, CHAOS_MODE, LEAK_MB, FAULT_RATIO all do.
SWITCH_NAME = re.compile(
    r"(?:^|_)(DEBUG\w*|DBG|FAULTS?|CHAOS\w*|LEAK\w*|MEMORY_GROWTH|INJECT\w*|DEV_?MODE)(?:_|$)",
    re.IGNORECASE,
)

# Interpreter switches that slow a process down or make it keep memory on purpose.
INTERPRETER_SWITCHES = frozenset(
    {"PYTHONASYNCIODEBUG", "PYTHONDEVMODE", "PYTHONTRACEMALLOC", "PYTHONMALLOCSTATS"}
)

# The one sanctioned switch; it is judged by its own rule (faults-enabled), not as a debug switch.
SANCTIONED = frozenset({"FALCON_FAULTS"})

_FALSY = frozenset({"", "0", "false", "no", "off", "none", "n", "f"})


def is_switch_name(name: str, *, anchored: bool = False) -> bool:
    """True when ``name`` looks like a debug/fault switch other than ``FALCON_FAULTS``.

    ``anchored`` (used for the process environment, which holds other programs'
    variables such as ``NVPL_BLAS_DEBUG_CPU_TYPE``) only counts names that are Falcon's
    (``FALCON_*``) or that *start* with the switch word (``DEBUG_MEMORY_GROWTH``).
    """
    upper = name.upper()
    if upper in SANCTIONED:
        return False
    if upper in INTERPRETER_SWITCHES:
        return True
    match = SWITCH_NAME.search(upper)
    if match is None:
        return False
    return not anchored or upper.startswith("FALCON_") or match.start() == 0


def is_enabled(value: str | None) -> bool:
    """A switch is on unless its value is empty or one of the usual spellings of "off"."""
    return value is not None and value.strip().strip("'\"").lower() not in _FALSY


def enabled_switches(variables: dict[str, str], *, anchored: bool = False) -> dict[str, str]:
    """The debug switches among ``variables`` that are switched on, name -> value."""
    return {
        k: v for k, v in variables.items() if is_switch_name(k, anchored=anchored) and is_enabled(v)
    }
