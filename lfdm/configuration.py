"""YAML sections as typed dataclasses: conversion with helpful errors, and the checks the config classes share."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


def dataclass_from_dict(cls: type, values: dict[str, Any], section: str):
    """Build dataclass `cls` from a YAML mapping, converting lists to tuples and ints/strings to floats.

    Raises ValueError on unknown keys (listing the valid ones) and on values of the wrong type.
    """
    if not isinstance(values, dict):
        raise ValueError(f"config section {section!r} must be a mapping; got {type(values).__name__}.")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in section {section!r}; valid keys: {names}.")
    converted = {key: _convert(value, hints[key], f"{section}.{key}") for key, value in values.items()}
    return cls(**converted)


def _convert(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(value, option, where)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(errors[0])
    if annotation is Any:
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where} must be a list; got {value!r}.")
        args = typing.get_args(annotation)
        item_types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(item_types) != len(value):
            raise ValueError(f"{where} must have {len(item_types)} items; got {value!r}.")
        return tuple(_convert(item, kind, where) for item, kind in zip(value, item_types, strict=True))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a mapping; got {value!r}.")
        return dict(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"{where} must be a number; got {value!r}.")
        try:
            return float(value)  # PyYAML reads "2e-4" (no dot) as a string
        except ValueError:
            raise ValueError(f"{where} must be a number; got {value!r}.") from None
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer; got {value!r}.")
        return value
    if annotation in (bool, str) and not isinstance(value, annotation):
        raise ValueError(f"{where} must be a {annotation.__name__}; got {value!r}.")
    return value


def plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def check_choice(where: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{where} must be one of {list(choices)}; got {value!r}.")


def check_positive(section: str, **values: float) -> None:
    for key, value in values.items():
        if value <= 0:
            raise ValueError(f"{section}.{key} must be > 0; got {value!r}.")
