"""Chip specs as TOML files: ``save_chip(spec, path)`` and ``load_chip(path)``.

The file is the nested dict of :func:`ascend_sim.hw.spec.to_dict`, with a ``[sources]`` table
whose keys are dotted field paths. Reading uses the standard library's tomllib; writing needs only
tables of scalars, so a small writer here keeps the dependency list short.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from .spec import ChipSpec, from_dict, to_dict


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"cannot write non-finite number {v} to TOML")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps(data: Mapping[str, Any]) -> str:
    """TOML text of a nested dict (scalars first, then sub-tables)."""
    out: list[str] = []

    def table(prefix: str, d: Mapping[str, Any]) -> None:
        scalars = [(k, v) for k, v in d.items() if not isinstance(v, Mapping)]
        subs = [(k, v) for k, v in d.items() if isinstance(v, Mapping)]
        if prefix and (scalars or not subs):
            out.append(f"\n[{prefix}]")
        for k, v in scalars:
            out.append(f"{_key(k)} = {_value(v)}")
        for k, v in subs:
            table(f"{prefix}.{_key(k)}" if prefix else _key(k), v)

    table("", data)
    return "\n".join(out).lstrip("\n") + "\n"


def save_chip(spec: ChipSpec, path: str | os.PathLike) -> None:
    data = to_dict(spec)
    sources = data.pop("sources")
    data["sources"] = sources  # last, so the numbers read first
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"# ascend-sim chip spec {spec.name}\n")
        f.write(dumps(data))


def load_chip(path: str | os.PathLike) -> ChipSpec:
    with open(path, "rb") as f:
        data = tomllib.load(f)
    return from_dict(data)
