"""Every message and response type round-trips through JSON, tagged by ``type``."""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime

import attrs
import pytest

from spacebot_core import (
    AnyContent,
    AnyResponse,
    Attachment,
    HistoryEntry,
    InboundMessage,
    MessageContent,
    OutboundResponse,
)
from spacebot_core.convert import (
    UnknownTypeError,
    dumps,
    history_to_data,
    loads,
    message_to_data,
    response_from_data,
    response_to_data,
)

WHEN = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
BINARY = bytes(range(256))

ONE_OF_EACH_RESPONSE = [
    OutboundResponse.Text("Hello"),
    OutboundResponse.ThreadReply("support", "In the thread"),
    OutboundResponse.File("report.pdf", BINARY, "application/pdf", caption="The report"),
    OutboundResponse.Reaction("👍"),
    OutboundResponse.RemoveReaction("👍"),
    OutboundResponse.Ephemeral("Only you see this", user_id="u1"),
    OutboundResponse.RichMessage("Rich", blocks=({"kind": "section", "text": "hi"},)),
    OutboundResponse.ScheduledMessage("Later", WHEN),
    OutboundResponse.StreamStart(),
    OutboundResponse.StreamChunk("part"),
    OutboundResponse.StreamEnd(),
    OutboundResponse.Status("typing"),
]


def _variants(namespace: type) -> set[type]:
    return {value for value in vars(namespace).values() if attrs.has(value)}


def _message(content: AnyContent) -> InboundMessage:
    return InboundMessage(
        id="<m1@example.com>",
        source="email",
        adapter="sales-email",
        conversation_id="thread-1",
        sender_id="alice@example.com",
        content=content,
        timestamp=WHEN,
        metadata={"subject": "Hi", "uid": 7, "folders": ["INBOX"]},
        formatted_author="Alice <alice@example.com>",
    )


def test_types_are_importable_from_the_package_root() -> None:
    import spacebot_core

    assert spacebot_core.MessageContent is MessageContent
    assert spacebot_core.OutboundResponse is OutboundResponse
    assert spacebot_core.InboundMessage is InboundMessage


def test_the_examples_cover_every_response_variant() -> None:
    assert {type(response) for response in ONE_OF_EACH_RESPONSE} == _variants(OutboundResponse)
    assert set(typing.get_args(AnyResponse)) == _variants(OutboundResponse)
    assert set(typing.get_args(AnyContent)) == _variants(MessageContent)


@pytest.mark.parametrize("response", ONE_OF_EACH_RESPONSE, ids=lambda r: type(r).__name__)
def test_every_response_round_trips_through_json_tagged_by_type(response: AnyResponse) -> None:
    text = json.dumps(response_to_data(response))

    assert json.loads(text)["type"] == type(response).type_tag
    assert response_from_data(json.loads(text)) == response
    assert loads(dumps(response), AnyResponse) == response


def test_every_type_tag_is_distinct() -> None:
    for namespace in (OutboundResponse, MessageContent):
        tags = [variant.type_tag for variant in _variants(namespace)]
        assert len(tags) == len(set(tags))


def test_file_bytes_survive_json_exactly() -> None:
    response = OutboundResponse.File("blob.bin", BINARY)

    data = json.loads(dumps(response))

    assert isinstance(data["data"], str)
    assert loads(json.dumps(data), AnyResponse).data == BINARY


def test_media_message_with_attachments_round_trips() -> None:
    attachments = (
        Attachment("photo.jpg", "image/jpeg", len(BINARY), BINARY),
        Attachment("huge.iso", "application/octet-stream", 10**9, None, "over the size limit"),
    )
    message = _message(MessageContent.Media("See attached", attachments))

    data = json.loads(json.dumps(message_to_data(message)))

    assert data["content"]["type"] == "media"
    assert loads(json.dumps(data), InboundMessage) == message


def test_text_message_round_trips_and_keeps_its_timestamp() -> None:
    message = _message(MessageContent.Text("Hello\nthere"))

    back = loads(dumps(message), InboundMessage)

    assert back == message
    assert back.timestamp == WHEN
    assert json.loads(dumps(message))["content"] == {"type": "text", "text": "Hello\nthere"}


def test_history_round_trips() -> None:
    history = [
        HistoryEntry("user", "Hi", WHEN, "alice@example.com"),
        HistoryEntry("assistant", "Hello!", WHEN),
    ]

    data = json.loads(json.dumps(history_to_data(history)))

    assert loads(json.dumps(data), list[HistoryEntry]) == history


def test_unknown_type_tag_is_our_own_error() -> None:
    with pytest.raises(UnknownTypeError):
        response_from_data({"type": "hologram", "text": "?"})
    with pytest.raises(UnknownTypeError):
        loads('{"text": "no tag"}', AnyResponse)


def test_values_are_frozen() -> None:
    response = OutboundResponse.Text("Hello")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        response.text = "changed"  # type: ignore[misc]


def test_file_bytes_are_not_in_the_repr() -> None:
    assert "<256 bytes>" in repr(OutboundResponse.File("a.bin", BINARY))
    assert "\\x00" not in repr(Attachment("a.bin", "x/y", 256, BINARY))
