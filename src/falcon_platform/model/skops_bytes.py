"""Reproducible skops bytes: the same fitted estimator always serialises to the same bytes.

``skops.io.dumps`` is not byte-stable: zip members carry the wall-clock time, and object ids
(``id(obj)``, i.e. memory addresses) name the array files and fill the ``__id__`` fields of
the schema; scikit-learn's text vectorizers even keep an ``id()`` as a fitted attribute.
:func:`dumps_reproducible` renumbers the ids in order of first appearance, blanks the
process-local attribute and rewrites the zip with fixed timestamps, so equal models give equal sha256 — the artifact hash
then identifies the model, not the moment it was written.

Written by hand because skops has no reproducible mode; the rewrite only renames ids
consistently (skops uses them solely as memo keys and member names) and the result is loaded
back by the unmodified ``skops.io`` loader (tests check the round trip).

Use::

    data = dumps_reproducible(estimator)
    skops.io.loads(data, trusted=[...])
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Any

SCHEMA_MEMBER = "schema.json"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_ID_FILE = re.compile(r"^(\d+)\.(npy|npz)$")
# Fitted attributes holding an id() of this process (sklearn's text vectorizers cache
# `id(self.stop_words)` to skip re-validating them); stored as null, the check simply re-runs.
_PROCESS_LOCAL_ATTRIBUTES = frozenset({"_stop_words_id"})


def dumps_reproducible(obj: Any) -> bytes:
    """skops-serialise ``obj`` into deterministic, deflate-compressed zip bytes."""
    import skops.io

    raw = skops.io.dumps(obj)
    with zipfile.ZipFile(io.BytesIO(raw)) as source:
        members = {name: source.read(name) for name in source.namelist()}
    schema = json.loads(members.pop(SCHEMA_MEMBER))
    renumber: dict[int, int] = {}
    schema = _renumber(schema, renumber)
    renamed: dict[str, bytes] = {}
    for name, data in members.items():
        match = _ID_FILE.match(name)
        if match is None:  # a member named otherwise (a future skops): kept, still loadable
            renamed[name] = data
        else:
            renamed[f"{_new_id(int(match.group(1)), renumber)}.{match.group(2)}"] = data
    renamed[SCHEMA_MEMBER] = json.dumps(schema, separators=(",", ":")).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in sorted(renamed):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            target.writestr(info, renamed[name], compresslevel=6)
    return out.getvalue()


def _new_id(old: int, renumber: dict[int, int]) -> int:
    return renumber.setdefault(old, len(renumber))


def _renumber(node: Any, renumber: dict[int, int]) -> Any:
    """Walk the schema in document order, replacing every object id by a sequential one."""
    if isinstance(node, list):
        return [_renumber(item, renumber) for item in node]
    if not isinstance(node, dict):
        return node
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key == "__id__" and isinstance(value, int):
            result[key] = _new_id(value, renumber)
        elif key == "file" and isinstance(value, str) and (match := _ID_FILE.match(value)):
            result[key] = f"{_new_id(int(match.group(1)), renumber)}.{match.group(2)}"
        elif key in _PROCESS_LOCAL_ATTRIBUTES and isinstance(value, dict) and "content" in value:
            result[key] = {**_renumber(value, renumber), "content": "null"}
        else:
            result[key] = _renumber(value, renumber)
    return result
