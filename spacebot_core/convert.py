"""The one cattrs converter: our types to and from JSON, unions tagged by ``type``.

Configured once, here. Field hooks come first, then the tagged unions, because
``configure_tagged_union`` snapshots the hooks it sees when it is called.
"""

from __future__ import annotations

import base64
import json
import typing
from datetime import datetime
from typing import Any, TypeVar

from cattrs.preconf.json import make_converter
from cattrs.strategies import configure_tagged_union

from spacebot_core.errors import SearchError, SpacebotError
from spacebot_core.types import (
    AnyContent,
    AnyResponse,
    HistoryEntry,
    InboundMessage,
    SearchHit,
    SearchQuery,
)

T = TypeVar("T")


class UnknownTypeError(SpacebotError):
    """A JSON document names a ``type`` that no class of ours carries."""


def _tag_of(cls: type) -> str:
    return cls.type_tag


def _build_converter():
    converter = make_converter()
    converter.register_unstructure_hook(bytes, lambda data: base64.b64encode(data).decode("ascii"))
    converter.register_structure_hook(bytes, lambda value, _: base64.b64decode(value))
    converter.register_unstructure_hook(datetime, datetime.isoformat)
    converter.register_structure_hook(datetime, lambda value, _: datetime.fromisoformat(value))
    for union in (AnyContent, AnyResponse):
        configure_tagged_union(union, converter, tag_generator=_tag_of, tag_name="type")
        # A variant unstructured on its own is tagged too, so that
        # ``loads(dumps(OutboundResponse.Text("hi")), AnyResponse)`` round-trips.
        for member in typing.get_args(union):
            converter.register_unstructure_hook(
                member, lambda value, _union=union: converter.unstructure(value, _union)
            )
    return converter


converter = _build_converter()


def to_data(value: Any) -> Any:
    """Unstructure one of our values into JSON-safe Python data."""
    return converter.unstructure(value)


def from_data(data: Any, cls: type[T] | Any) -> T:
    """Structure JSON-safe data into ``cls``; an unknown ``type`` tag is our own error."""
    try:
        return converter.structure(data, cls)
    except KeyError as error:
        raise UnknownTypeError(f"unknown type tag {error} in {data!r:.200}") from error
    except Exception as error:  # cattrs groups the unknown-tag KeyError with others
        if _holds_key_error(error):
            raise UnknownTypeError(f"unknown type tag in {data!r:.200}") from error
        raise


def _holds_key_error(error: BaseException) -> bool:
    if isinstance(error, KeyError):
        return True
    return any(_holds_key_error(inner) for inner in getattr(error, "exceptions", ()))


def dumps(value: Any) -> str:
    """One of our values as a JSON string."""
    return json.dumps(to_data(value), ensure_ascii=False)


def loads(text: str | bytes, cls: type[T] | Any) -> T:
    """A JSON string back into ``cls``."""
    return from_data(json.loads(text), cls)


def response_to_data(response: AnyResponse) -> dict[str, Any]:
    """An outbound response as tagged JSON data."""
    return converter.unstructure(response, AnyResponse)


def response_from_data(data: Any) -> AnyResponse:
    """Tagged JSON data back into an outbound response."""
    return from_data(data, AnyResponse)


def message_to_data(message: InboundMessage) -> dict[str, Any]:
    """An inbound message as JSON data (its content tagged by ``type``)."""
    return converter.unstructure(message)


def history_to_data(history: list[HistoryEntry]) -> list[dict[str, Any]]:
    """A conversation's earlier messages as JSON data."""
    return converter.unstructure(history, list[HistoryEntry])


def search_query_to_data(query: SearchQuery) -> dict[str, Any]:
    """A search query as JSON data."""
    return converter.unstructure(query)


def search_query_from_data(data: Any) -> SearchQuery:
    """JSON data back into a search query.

    :raises SearchError: a value out of range or of the wrong type, said in one line.
    """
    if not isinstance(data, dict):
        raise SearchError(f"a search query is a JSON object, not {data!r:.200}")
    try:
        return converter.structure(data, SearchQuery)
    except Exception as error:  # cattrs groups the validators' errors with its own
        found = _first_search_error(error)
        if found is not None:
            raise found from None
        raise SearchError(f"not a search query: {data!r:.200}") from None


def _first_search_error(error: BaseException) -> SearchError | None:
    if isinstance(error, SearchError):
        return error
    for inner in getattr(error, "exceptions", ()):
        if (found := _first_search_error(inner)) is not None:
            return found
    return None


def search_hits_to_data(hits: list[SearchHit]) -> list[dict[str, Any]]:
    """Search hits as JSON data (dates as ISO 8601 text)."""
    return converter.unstructure(hits, list[SearchHit])


def search_hits_from_data(data: Any) -> list[SearchHit]:
    """JSON data back into search hits."""
    return converter.structure(data, list[SearchHit])
