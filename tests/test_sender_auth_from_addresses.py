"""The From addresses sender authentication counts are the stdlib's, also on its fast path.

``sender_auth`` reads a plain From (``Name <a@b>``, ``<a@b>``, ``a@b``) without
``email.utils.getaddresses``; whatever the value, the addresses must be the ones the
stdlib reads, or a forger could make one From count as none or two.
"""

from __future__ import annotations

import email.utils

from hypothesis import given, settings
from hypothesis import strategies as st

from spacebot_email.sender_auth import _from_addresses, header_facts


def _stdlib_addresses(value: str) -> list[str]:
    found = [address for _, address in email.utils.getaddresses([value])]
    return [address for address in found if address] or [""]


_PIECES = st.sampled_from(
    ["a", "b.c", "x@y.z", "@", "<", ">", ".", "..", " ", "\t", ",", '"', "(", ")", "\\",
     ";", ":", "[", "]", "é", "\u00a0", "Alice", "=?utf-8?q?A?=", "'", "+", "\r\n "]
)  # fmt: skip


@settings(max_examples=3000)
@given(st.lists(_PIECES, max_size=12).map("".join))
def test_from_addresses_are_the_stdlibs(value: str) -> None:
    value = value.strip()
    assert _from_addresses(value) == _stdlib_addresses(value)


def test_plain_forms_take_the_address_as_written() -> None:
    for value in ("Alice Example <alice@example.com>", "<a.b+c@x.example>", "o'neil@x.y"):
        assert _from_addresses(value) == _stdlib_addresses(value)


def test_two_ats_are_read_as_the_stdlib_reads_them() -> None:
    """bpo-34155: ``a@evil.org@example.com`` must not pass as the address ``a@evil.org``."""
    value = "a@evil.org@example.com"
    assert _from_addresses(value) == _stdlib_addresses(value) == ["@example.com"]
    facts = header_facts(b"From: a@evil.org@example.com\r\n\r\nbody\r\n")
    assert facts.from_addresses == ("@example.com",)
