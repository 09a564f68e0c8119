"""Validation problems as a user reads them: dotted paths, short messages, env hints."""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from drd.config.fields import (
    _Invalid,
)


def _short(text: str) -> str:
    text = text if text.isprintable() else repr(text)
    return text if len(text) <= 64 else text[:61] + "..."


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _join(base: str, relative: str) -> str:
    if not base or not relative:
        return base or relative
    return base + relative if relative.startswith("[") else f"{base}.{relative}"


def _loc_path(loc: Iterable[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "[key]":  # the key itself failed: the path already ends with it
            path = _join(path, _short(part))
    return path


def _env_hint(path: str) -> str:
    """ " (from DRD_X__Y)" when an environment variable set the value at dotted *path*."""
    names = {name.upper() for name in os.environ if name.upper().startswith("DRD_")}
    variable = "DRD"
    for part in filter(None, re.split(r"[.\[\]]+", path)):
        variable += ("_" if variable == "DRD" else "__") + part.upper()
        if variable in names:
            return f" (from {variable})"
    return ""


def _explain(error: Any, root: type[BaseModel] | None = None) -> list[tuple[str, str]]:
    """
    One pydantic error as (path, message) pairs; an `_Invalid` expands to its problems.
    An unknown key of a *root* model (or of a model under it) is explained by `_unknown_key`.
    """
    path = _loc_path(error["loc"])
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, _Invalid):
        return [(_join(path, rel), msg) for rel, msg in cause.problems]
    if error["type"] == "extra_forbidden" and root is not None and error["loc"]:
        return [(path, _unknown_key(tuple(error["loc"]), root))]
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return [(path, _lower_first(message))]


def _hinted(
    errors: list[tuple[str, str]], data: Mapping[str, Any] | None = None
) -> list[tuple[str, str]]:
    """Name the variable behind each error that the environment caused, and named items."""
    return [(_named(path, data or {}), message + _env_hint(path)) for path, message in errors]


def _named(path: str, data: Mapping[str, Any]) -> str:
    """``replication[0].x`` → ``replication[prod].x``: a list's item by its ``name``."""
    found = re.match(r"([a-z_]+)\[(\d+)\]", path)
    if found is None:
        return path
    items = data.get(found.group(1))
    index = int(found.group(2))
    if not isinstance(items, list) or index >= len(items) or not isinstance(items[index], dict):
        return path
    name = items[index].get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        return path
    if sum(isinstance(i, dict) and i.get("name") == name for i in items) > 1:
        return path  # a duplicate name: only the index tells the two apart
    return f"{found.group(1)}[{name}]{path[found.end() :]}"


# Keys that would hold a secret, and the endpoint variable that carries it instead.
_SECRET_VARIABLES = {"password": "PASSWORD", "token": "TOKEN"}


def _unknown_key(loc: tuple[int | str, ...], root: type[BaseModel]) -> str:
    """
    Why the last key of *loc* is refused: a secret written in the file (say where it
    goes instead), a near miss of a valid key ("did you mean"), or simply unknown.
    """
    key = str(loc[-1])
    fields = _fields_at(root, loc[:-1])
    if f"{key}_file" in fields:
        where = f"{key}_file"
        if loc[0] == "endpoints" and len(loc) == 3 and key in _SECRET_VARIABLES:
            name = re.sub(r"[^A-Z0-9]", "_", str(loc[1]).upper())
            where += f" or DRD_ENDPOINT_{name}_{_SECRET_VARIABLES[key]}"
        return f"secrets are not read from the config file: use {where}"
    close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean `{close[0]}`?"
    return "unknown key"


def _fields_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the model at *loc* under *root* accepts ([] when *loc* is not a model)."""
    kind: Any = root
    for part in loc:
        kind = _bare(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return []
            kind = field.annotation
        elif get_origin(kind) in (dict, list):
            kind = get_args(kind)[-1]
        else:
            return []
    kind = _bare(kind)
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return sorted(kind.model_fields)
    return []


def _bare(kind: Any) -> Any:
    """*kind* without ``Annotated[...]`` and ``| None``."""
    while True:
        origin = get_origin(kind)
        if origin is Annotated:
            kind = get_args(kind)[0]
        elif origin in (Union, types.UnionType):
            kind = next(a for a in get_args(kind) if a is not type(None))
        else:
            return kind


def _summary(source: str, errors: list[tuple[str, str]]) -> str:
    count = len(errors)
    return f"{source}: {count} configuration error{'s' if count != 1 else ''}"
