"""Values checked against dataclass type hints (``typing.get_type_hints``): the one checker behind the training
config, its sections, the data options and the notebooks' parameters."""
from __future__ import annotations

import types
import typing


def describe(hint) -> str:
    """``hint`` in words: ``str | tuple[str, ...] | None`` → "str, a list of str or None"; ``tuple[int, int]`` →
    "a list of 2 int"."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        words = [describe(h) for h in typing.get_args(hint)]
        return ", ".join(words[:-1]) + " or " + words[-1]
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        return f"a list of {describe(args[0])}" if args[-1] is Ellipsis else f"a list of {len(args)} {describe(args[0])}"
    if typing.get_origin(hint) is list:
        return f"a list of {describe(typing.get_args(hint)[0])}"
    if typing.get_origin(hint) is dict:
        return "a mapping"
    return "None" if hint is type(None) else hint.__name__


def checked(name: str, value, hint):
    """``value`` as the type hint ``hint`` takes it, or a one-line TypeError "``name`` must be …, got …".

    An int is a float; a string that parses as a number is a float (YAML 1.1 reads ``1e-4``, without a dot, as a
    string); a list is a tuple; a bool is never an int or a float."""
    try:
        return _as(value, hint)
    except TypeError:
        raise TypeError(f"{name} must be {describe(hint)}, got {value!r}") from None


def _as(value, hint):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _as(value, option)
            except TypeError:
                pass
        raise TypeError
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError
        items = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        if len(items) != len(value):
            raise TypeError
        return tuple(_as(v, a) for v, a in zip(value, items))
    if origin is list:
        if not isinstance(value, list):
            raise TypeError
        return [_as(v, args[0]) for v in value]
    if origin is dict:
        hint = dict
    if hint is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise TypeError from None
    ok = {type(None): value is None,
          float: isinstance(value, (int, float)) and not isinstance(value, bool),
          int: isinstance(value, int) and not isinstance(value, bool)}.get(hint)
    if not (isinstance(value, hint) if ok is None else ok):
        raise TypeError
    return value
