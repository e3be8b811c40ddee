"""Did the receiving server vouch for the sender? RFC 8601 Authentication-Results, read safely.

Anyone can write any From header. What tells a genuine sender from a forger is the
receiving server's verdict (DMARC, DKIM, SPF), which it records in an
``Authentication-Results`` header that it adds **on top** of the mail. A forger can add
headers of their own, but only below it. So only the topmost such header is read, and
optionally only when it names the server we trust (``trusted_authserv_id``).

A sender counts as authenticated when that header shows, for the domain of the From
address:

1. ``dmarc=pass`` (with ``header.from`` naming that domain, when it is given), or
2. ``dkim=pass`` with a signing domain (``header.d``, else the domain of ``header.i``)
   aligned with it, or
3. ``spf=pass`` with an envelope sender (``smtp.mailfrom``) aligned with it;

and no ``dmarc=fail`` overrules it. *Aligned* means the same domain, or a parent of it
(``company.com`` vouches for ``eu.company.com``): a relaxed alignment that needs no
public-suffix list and can never let a sibling or a child domain speak for its parent.

Pure functions, no I/O: the raw bytes of a mail in, a :class:`Verdict` out.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterator

import attrs

__all__ = [
    "AuthenticationResults",
    "HeaderFacts",
    "MethodResult",
    "Verdict",
    "check_sender",
    "header_facts",
    "parse_authentication_results",
    "verify",
]

#: Header sections longer than this are read this far only: the receiving server's
#: header is at the top, and a mail with megabytes of headers gets no more of our time.
MAX_HEADER_SCAN_BYTES = 1 << 20
#: A longer Authentication-Results value is not a real one (Fastmail's run to 2 KB).
MAX_VALUE_CHARS = 16384

# The blank line after the header section, without the CR that may open it: a pattern
# that starts with a fixed byte is searched for many times faster.
_HEADER_END = re.compile(rb"\n\r?\n")
_PAIR = re.compile(r'([^\s=;"]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s;"]+)')
_DOMAIN_LABELS = re.compile(r"^[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?$")
# One address written plainly: ``Name <local@domain>``, ``<local@domain>`` or
# ``local@domain``, both halves dot-atoms of RFC 5322 atext. The stdlib's parser reads
# such a value as written (a name without its specials ends at the "<"); any other
# value, with quotes, comments, groups, several addresses, spaces inside the brackets
# or characters past ASCII in the address, still goes to it.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
_PLAIN_FROM = re.compile(
    rf"[^\"()<>@,:;\[\]\\]*<(?P<bracketed>{_DOT_ATOM}@{_DOT_ATOM})>"
    rf"|(?P<bare>{_DOT_ATOM}@{_DOT_ATOM})"
)


@attrs.frozen
class MethodResult:
    """One ``method=result`` of an Authentication-Results header, with its properties.

    :ivar method: ``dmarc``, ``dkim``, ``spf``, ... lowercased, version removed.
    :ivar result: ``pass``, ``fail``, ``none``, ... lowercased.
    :ivar properties: ``("header.from", "example.com")`` pairs, keys lowercased, in order.
    """

    method: str
    result: str
    properties: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> str | None:
        """The first value of property ``name`` (``header.d``), or None."""
        return next((value for key, value in self.properties if key == name), None)

    def __str__(self) -> str:
        """``dkim=pass header.d=example.com``, as a log line shows it."""
        shown = [f"{key}={value}" for key, value in self.properties if "." in key]
        return " ".join([f"{self.method}={self.result}", *shown[:2]])


@attrs.frozen
class AuthenticationResults:
    """One Authentication-Results header, parsed.

    :ivar authserv_id: who wrote it (``mx.google.com``), or None when it names nobody
        (Microsoft's servers leave it out).
    :ivar results: what each method found, in order.
    """

    authserv_id: str | None
    results: tuple[MethodResult, ...]


@attrs.frozen
class HeaderFacts:
    """What the header section says that sender authentication needs.

    :ivar authentication_results: the topmost Authentication-Results value, unfolded,
        or None when there is none.
    :ivar from_addresses: the addresses of every From header, in order.
    """

    authentication_results: str | None
    from_addresses: tuple[str, ...]


@attrs.frozen
class Verdict:
    """Whether the sender is authenticated, and why (a short reason for the log).

    :ivar authenticated: True when the receiving server vouched for the From domain.
    :ivar reason: ``"dmarc=pass for example.com (mx.google.com)"``, or why not.
    """

    authenticated: bool
    reason: str

    def as_metadata(self) -> dict[str, object]:
        """The verdict as JSON-safe metadata for an InboundMessage."""
        return {"authenticated": self.authenticated, "reason": self.reason}


def verify(raw: bytes, from_address: str, trusted_authserv_id: str | None = None) -> Verdict:
    """Whether the receiving server vouched for the sender of ``raw``.

    :param raw: the mail as fetched; only its header section is read.
    :param from_address: the From address the bot would answer (the parsed sender).
    :param trusted_authserv_id: when set, the topmost header must be written by this
        server or one of its subdomains (``messagingengine.com`` trusts
        ``mx3.messagingengine.com``); empty or None trusts whichever server is on top.
    :return: the verdict; never raises.
    """
    return check_sender(header_facts(raw), from_address, trusted_authserv_id)


def header_facts(raw: bytes) -> HeaderFacts:
    """The topmost Authentication-Results value and the From addresses of a mail.

    Linear in the size of the header section, which is read up to
    :data:`MAX_HEADER_SCAN_BYTES`; a mail without a blank line is all headers.
    """
    section = raw[: _header_section_end(raw)]
    top: str | None = None
    senders: list[str] = []
    for name, value in _headers(section):
        if name == b"authentication-results" and top is None:
            top = _text(value)[:MAX_VALUE_CHARS]
        elif name == b"from":
            senders.extend(_from_addresses(_text(value)))
    return HeaderFacts(top, tuple(senders))


def _header_section_end(raw: bytes) -> int:
    """Where the header section of ``raw`` ends: at its blank line (``\\r?\\n\\r?\\n``), or
    after :data:`MAX_HEADER_SCAN_BYTES` when there is none that early."""
    end = _HEADER_END.search(raw, 0, MAX_HEADER_SCAN_BYTES)
    if end is None:
        return MAX_HEADER_SCAN_BYTES
    # The line ending before the blank line may be CRLF: the section ends before its CR.
    start = end.start()
    return start - 1 if start and raw[start - 1 : start] == b"\r" else start


def _from_addresses(value: str) -> list[str]:
    """The addresses of one From value, as ``email.utils.getaddresses`` reads them.

    ``[""]`` when it holds none, so that an empty From still counts as one.
    """
    plain = _PLAIN_FROM.fullmatch(value)
    if plain is not None:  # the common case, without the stdlib's slow parser
        return [plain["bracketed"] or plain["bare"]]
    found = [address for _, address in email.utils.getaddresses([value])]
    return [address for address in found if address] or [""]


def check_sender(
    facts: HeaderFacts, from_address: str, trusted_authserv_id: str | None = None
) -> Verdict:
    """The verdict on ``facts`` for a mail from ``from_address`` (see the module doc)."""
    domain = _domain_of(from_address)
    if not domain:
        return Verdict(False, "the From address has no domain to authenticate")
    if len(facts.from_addresses) != 1:
        return Verdict(
            False, f"the mail has {len(facts.from_addresses)} From addresses; one is needed"
        )
    if facts.authentication_results is None:
        return Verdict(
            False,
            "no Authentication-Results header: the receiving server did not vouch for the "
            'sender (set sender_auth = "off" for a server that adds none)',
        )
    parsed = parse_authentication_results(facts.authentication_results)
    if parsed is None:
        return Verdict(False, "the topmost Authentication-Results header cannot be read")
    trusted = (trusted_authserv_id or "").strip().lower().rstrip(".")
    if trusted and not _within(parsed.authserv_id or "", trusted):
        return Verdict(
            False,
            f"the topmost Authentication-Results header is from "
            f"{parsed.authserv_id or 'an unnamed server'}, not from {trusted} "
            "(trusted_authserv_id)",
        )
    return _judge(parsed, domain)


def _judge(parsed: AuthenticationResults, domain: str) -> Verdict:
    """Apply the three rules to one parsed header, for the From ``domain``."""
    where = f" ({parsed.authserv_id})" if parsed.authserv_id else ""
    if any(r.method == "dmarc" and r.result == "fail" for r in parsed.results):
        return Verdict(False, f"dmarc=fail for {domain}{where}")
    for result in parsed.results:
        if result.result != "pass":
            continue
        if result.method == "dmarc" and _domain_of(result.get("header.from") or domain) == domain:
            return Verdict(True, f"dmarc=pass for {domain}{where}")
        if result.method == "dkim" and _aligned(_dkim_domain(result), domain):
            return Verdict(True, f"dkim=pass for {_dkim_domain(result)}{where}")
        if result.method == "spf" and _aligned(_domain_of(result.get("smtp.mailfrom")), domain):
            return Verdict(True, f"spf=pass for {_domain_of(result.get('smtp.mailfrom'))}{where}")
    found = ", ".join(str(r) for r in parsed.results if r.method in ("dmarc", "dkim", "spf"))
    return Verdict(
        False,
        f"no dmarc, dkim or spf pass aligned with {domain}{where}: {found or 'no results'}",
    )


def parse_authentication_results(value: str) -> AuthenticationResults | None:
    """Parse one Authentication-Results value (RFC 8601 section 2.2), leniently.

    Comments are dropped; a value that starts with ``method=result`` (Microsoft's
    form) has no authserv-id. ``none`` yields no results.

    :return: the parsed header, or None when it is not one.
    """
    segments = _split_outside_quotes(_strip_comments(value), ";")
    if not segments or not segments[0].strip():
        return None
    head = segments[0].strip()
    if "=" in head:  # no authserv-id: the first segment is already a result
        authserv_id, rest = None, segments
    else:
        authserv_id, rest = head.split()[0].lower(), segments[1:]
    results = []
    for segment in rest:
        pairs = [(key.lower(), _unquote(val)) for key, val in _PAIR.findall(segment)]
        if not pairs:
            continue
        method, result = pairs[0]
        method = method.split("/", 1)[0]
        if method in ("reason", "none") or "." in method:
            continue
        results.append(MethodResult(method, result.lower(), tuple(pairs[1:])))
    return AuthenticationResults(authserv_id, tuple(results))


def _headers(section: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(lowercased name, unfolded value) of each header field, in order."""
    name: bytes | None = None
    value: list[bytes] = []
    for line in section.split(b"\n"):
        line = line.rstrip(b"\r")
        if line[:1] in (b" ", b"\t") and name is not None:
            value.append(line)
            continue
        if name is not None:
            yield name, b" ".join(value)
        name, colon, first = line.partition(b":")
        if colon:
            name, value = name.strip().lower(), [first]
        else:
            name, value = None, []
    if name is not None:
        yield name, b" ".join(value)


def _text(value: bytes) -> str:
    """A raw header value as text (RFC 8601 values are ASCII; comments may not be)."""
    return value.decode("utf-8", "replace").strip()


def _strip_comments(value: str) -> str:
    """``value`` without its (nested, escaped) comments; quoted strings are kept."""
    out: list[str] = []
    depth = 0
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(char)
            continue
        if char == "\\":
            escaped = True
            if depth == 0:
                out.append(char)
        elif quoted:
            quoted = char != '"'
            out.append(char)
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
            out.append(" ")
        elif depth == 0:
            quoted = char == '"'
            out.append(char)
    return "".join(out)


def _split_outside_quotes(value: str, separator: str) -> list[str]:
    """``value`` split at ``separator`` where it is not inside a quoted string."""
    parts, current = [], []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    """A property value without its quotes and escapes."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _dkim_domain(result: MethodResult) -> str:
    """The signing domain of a dkim result: ``header.d``, else the domain of ``header.i``."""
    return _domain_of(result.get("header.d") or result.get("header.i"))


def _domain_of(value: str | None) -> str:
    """The domain of an address or a bare domain, lowercased; empty when there is none."""
    domain = (value or "").strip().strip("<>").rpartition("@")[2].strip().lower().rstrip(".")
    return domain if _DOMAIN_LABELS.match(domain) and "." in domain else ""


def _aligned(authenticated: str, from_domain: str) -> bool:
    """Whether ``authenticated`` is ``from_domain`` or one of its parents (not a TLD)."""
    authenticated = _domain_of(authenticated)
    return bool(authenticated) and _within(from_domain, authenticated)


def _within(name: str, domain: str) -> bool:
    """Whether ``name`` is ``domain`` or a subdomain of it."""
    name = name.lower().rstrip(".")
    return name == domain or name.endswith("." + domain)
