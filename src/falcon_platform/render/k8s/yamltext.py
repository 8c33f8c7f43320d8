"""YAML text for manifests: keys in the order written, multi-line strings as literal blocks.

PyYAML's safe dumper, so nothing but plain data can be written (no Python tags)::

    dump_one({"kind": "ConfigMap", "data": {"falcon.yaml": "a: 1\\nb: 2\\n"}})
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """Literal blocks for the spec, the dashboard and PromQL; lists indented under their key."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def ignore_aliases(self, data: object) -> bool:
        return True  # a selector used twice is written twice, not as &id001 / *id001


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    literal = "\n" in data and not any(line != line.rstrip() for line in data.splitlines())
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if literal else None)


_Dumper.add_representer(str, _str)

_OPTIONS: dict[str, Any] = {
    "Dumper": _Dumper,
    "sort_keys": False,
    "default_flow_style": False,
    "width": 1000,
    "allow_unicode": True,
}


def dump_one(data: Any) -> str:
    text: str = yaml.dump(data, **_OPTIONS)
    return text


def dump_all(documents: Iterable[Any]) -> str:
    text: str = yaml.dump_all(list(documents), explicit_start=True, **_OPTIONS)
    return text
