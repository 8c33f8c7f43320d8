"""Reading ``falcon.yaml``: YAML errors with line numbers, unknown keys with a suggestion.

::

    spec = load_spec(Path("falcon.yaml"))     # a missing default file gives Spec()
    spec = load_spec(None)                    # same as the default path, falcon.yaml

Every problem is reported at once (``spec_problems``), so ``falcon config check``
can list them all; ``load_spec`` raises one ``ConfigError`` that names them.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from falcon_platform.config.spec import Spec
from falcon_platform.errors import ConfigError

DEFAULT_SPEC_PATH = Path("falcon.yaml")


def load_spec(path: Path | None = None) -> Spec:
    """Parse and validate the spec; raise ConfigError listing every problem.

    ``None`` (or the default ``falcon.yaml``) means ``falcon.yaml`` in the working
    directory; when that default file is absent ``Spec()`` is returned. Any other path
    must exist.
    """
    spec, problems = spec_problems(path)
    if problems or spec is None:
        where = path if path is not None else DEFAULT_SPEC_PATH
        raise ConfigError(f"{where}: " + "; ".join(problems))
    return spec


def spec_problems(path: Path | None) -> tuple[Spec | None, list[str]]:
    """The spec, or None and the list of problems (each naming key, line and fix)."""
    target = path if path is not None else DEFAULT_SPEC_PATH
    if not target.is_file():
        # Only the default name may be absent (FALCON_SPEC_PATH's default is falcon.yaml); a
        # path someone chose must exist, or prod would silently run on defaults.
        if target == DEFAULT_SPEC_PATH:
            return Spec(), []
        return None, [f"spec file {target} does not exist (pass --spec with an existing file)"]
    return parse_spec_text(target.read_text(encoding="utf-8"), source=str(target))


def parse_spec_text(text: str, *, source: str = "falcon.yaml") -> tuple[Spec | None, list[str]]:
    """Pure: YAML text -> (Spec, []) or (None, problems)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        return None, [f"{source}: invalid YAML at {line}{exc.problem or exc}"]
    except yaml.YAMLError as exc:
        return None, [f"{source}: invalid YAML: {exc}"]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return None, [
            f"{source}: the top level must be a mapping of sections (slo:, workers:, ...)"
        ]
    try:
        return Spec.model_validate(data), []
    except ValidationError as exc:
        return None, [_describe(error, root) for error in exc.errors(include_url=False)]


def _describe(error: Any, root: yaml.Node | None) -> str:
    loc = tuple(error["loc"])
    dotted = ".".join(str(part) for part in loc)
    line = _line_of(root, loc)
    at = f" (line {line})" if line else ""
    if error["type"] == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(valid)}"
        return f"unknown key '{dotted}'{at}{hint}"
    return f"{dotted}{at}: {error['msg']} (got {error.get('input')!r})"


def _valid_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model that ``loc`` points into (list indices are skipped)."""
    model: type[BaseModel] = Spec
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))
        nested = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nested is None:
            return []
        model = nested
    return list(model.model_fields)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (the key's line for mappings)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
