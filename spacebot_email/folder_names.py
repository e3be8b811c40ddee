"""Folder names on the wire: IMAP's modified UTF-7 (RFC 3501 section 5.1.3), quoted.

A folder called ``Rechnungen & Belege`` or ``Входящие`` is sent as
``"Rechnungen &- Belege"`` or ``"&BBIERQQ+BDQETwRJBDgENQ-"``; a name with spaces
must be quoted or the server reads it as two arguments.
"""

from __future__ import annotations

import base64


def encode_folder_name(name: str) -> str:
    """A folder name in modified UTF-7."""
    encoded: list[str] = []
    pending: list[str] = []
    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            _flush_non_ascii(pending, encoded)
            encoded.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    _flush_non_ascii(pending, encoded)
    return "".join(encoded)


def _flush_non_ascii(pending: list[str], encoded: list[str]) -> None:
    if not pending:
        return
    utf16 = "".join(pending).encode("utf-16-be")
    chunk = base64.b64encode(utf16).decode("ascii").rstrip("=").replace("/", ",")
    encoded.append(f"&{chunk}-")
    pending.clear()


def decode_folder_name(encoded: str) -> str:
    """A modified UTF-7 folder name back to text; undecodable runs are kept as written."""
    decoded: list[str] = []
    position = 0
    while position < len(encoded):
        start = encoded.find("&", position)
        if start < 0:
            decoded.append(encoded[position:])
            break
        decoded.append(encoded[position:start])
        end = encoded.find("-", start)
        if end < 0:
            decoded.append(encoded[start:])
            break
        decoded.append(_decode_run(encoded[start + 1 : end]))
        position = end + 1
    return "".join(decoded)


def _decode_run(run: str) -> str:
    if not run:
        return "&"
    padded = run.replace(",", "/") + "=" * (-len(run) % 4)
    try:
        return base64.b64decode(padded).decode("utf-16-be")
    except (ValueError, UnicodeDecodeError):
        return f"&{run}-"


def quote_folder_name(name: str) -> str:
    """A folder name ready to be an IMAP command argument: encoded and quoted."""
    encoded = encode_folder_name(name).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{encoded}"'
