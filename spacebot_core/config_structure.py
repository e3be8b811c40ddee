"""A strict cattrs converter for config tables, and its errors in the user's words.

It is apart from the JSON converter in :mod:`spacebot_core.convert` on purpose: JSON
we wrote ourselves may be structured leniently, but a config file is typed by a person,
so ``imap_port = "993"`` or ``imap_use_tls = "false"`` must be an error, not be turned
into ``993`` and ``True``. Values that came from ``env:`` are strings by nature; they
are parsed into the type the key wants.
"""

from __future__ import annotations

import typing
from typing import Any

import cattrs
from cattrs.errors import ForbiddenExtraKeysError

_TYPE_WORDS = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "a string",
    list: "a list",
}
_TRUE_WORDS = {"true", "yes", "on", "1"}
_FALSE_WORDS = {"false", "no", "off", "0"}


class EnvValue(str):
    """A string that came from an environment variable through ``env:NAME``."""


class StructureFailure(Exception):
    """One config mistake, worded as ``key: what is wrong`` without the value."""


class _WrongType(Exception):
    def __init__(self, wanted: type, value: Any) -> None:
        super().__init__(f"expected {_TYPE_WORDS.get(wanted, wanted.__name__)}, got {_kind(value)}")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _structure_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise _WrongType(str, value)
    return str(value)


def _structure_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, EnvValue) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
        return value.strip().lower() in _TRUE_WORDS
    raise _WrongType(bool, value)


def _structure_int(value: Any, _: type) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, EnvValue) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise _WrongType(int, value)


def _structure_float(value: Any, _: type) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, EnvValue):
        try:
            return float(value)
        except ValueError:
            pass
    raise _WrongType(float, value)


def _is_list_type(cls: Any) -> bool:
    return typing.get_origin(cls) in (list, tuple)


def _structure_list(value: Any, cls: Any) -> Any:
    if not isinstance(value, list):
        raise _WrongType(list, value)
    (item_type, *_) = typing.get_args(cls) or (Any,)
    items = [_converter.structure(item, item_type) for item in value]
    return tuple(items) if typing.get_origin(cls) is tuple else items


def _build() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook_func(_is_list_type, _structure_list)
    return converter


_converter = _build()


def structure_strictly(data: dict[str, Any], cls: type) -> Any:
    """Structure one config table into ``cls``, or raise :class:`StructureFailure`."""
    try:
        return _converter.structure(data, cls)
    except Exception as error:
        messages = cattrs.transform_error(error, path="", format_exception=_describe)
        raise StructureFailure(_first_message(messages)) from None


def _describe(error: BaseException, wanted: type | None) -> str:
    if isinstance(error, ForbiddenExtraKeysError):
        keys = ", ".join(f"'{key}'" for key in sorted(error.extra_fields))
        return f"unknown key {keys}"
    if isinstance(error, KeyError):
        return "is required"
    if isinstance(error, _WrongType):
        return str(error)
    if isinstance(error, ValueError) and str(error):
        return str(error)  # an attrs validator's message, which names the key
    choices = _literal_choices(wanted)
    if choices:
        return "must be one of " + ", ".join(f'"{choice}"' for choice in choices)
    return f"has an invalid value ({type(error).__name__})"


def _literal_choices(wanted: Any) -> list[Any]:
    """The allowed values of a ``Literal[...]`` type, also inside ``Literal[...] | None``."""
    if typing.get_origin(wanted) is typing.Literal:
        return list(typing.get_args(wanted))
    return [choice for member in typing.get_args(wanted) for choice in _literal_choices(member)]


def _first_message(messages: list[str]) -> str:
    """``"unknown key 'x' @ "`` or ``"is required @ .imap_host"`` to ``key: message``.

    An unknown key comes first: a misspelt required key is reported as the typo it is.
    """
    messages = sorted(messages, key=lambda message: not message.startswith("unknown key"))
    message, _, path = messages[0].rpartition(" @ ")
    key = path.lstrip(".")
    if not key:
        return message
    return f"{key}: {message}"
