"""Only a sender the receiving server vouched for passes allowed_senders.

The mails carry the Authentication-Results headers that Gmail, Microsoft 365 and
Fastmail write (their real shapes: folding, comments, Microsoft's missing authserv-id,
Fastmail's x- methods), with forged ones below them, as a forger would add them.
"""

# The providers' header lines are kept as long as they write them.
# ruff: noqa: E501

from __future__ import annotations

import logging
import time
from email.utils import make_msgid

import pytest
from email_setup import instance_keys, not_from, run_bot_once, write_config

from spacebot_core.config import load_config
from spacebot_core.plugins import load_plugins
from spacebot_email.sender_auth import (
    check_sender,
    header_facts,
    parse_authentication_results,
    verify,
)

# -- what each provider writes on top of a mail it received ----------------------------

GMAIL_PASS = """\
ARC-Authentication-Results: i=1; mx.google.com;
       dkim=pass header.i=@{domain} header.s=s1 header.b=AbCdEf12;
       spf=pass (google.com: domain of {sender} designates 203.0.113.5 as permitted sender) smtp.mailfrom={sender};
       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from={domain}
Return-Path: <{sender}>
Received: from mail.{domain} (mail.{domain}. [203.0.113.5])
        by mx.google.com with ESMTPS id a1si123.2023.11.14.10.00.00
        for <bot@gmail.com>
        (version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384 bits=256/256);
        Tue, 14 Nov 2023 10:00:00 -0800 (PST)
Received-SPF: pass (google.com: domain of {sender} designates 203.0.113.5 as permitted sender) client-ip=203.0.113.5;
Authentication-Results: mx.google.com;
       dkim=pass header.i=@{domain} header.s=s1 header.b=AbCdEf12;
       spf=pass (google.com: domain of {sender} designates 203.0.113.5 as permitted sender) smtp.mailfrom={sender};
       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from={domain}
"""
GMAIL_SPOOFED = """\
Return-Path: <{sender}>
Received: from evil.example (evil.example. [198.51.100.7])
        by mx.google.com with ESMTP id b2si456;
        Tue, 14 Nov 2023 10:00:00 -0800 (PST)
Received-SPF: fail (google.com: domain of {sender} does not designate 198.51.100.7 as permitted sender) client-ip=198.51.100.7;
Authentication-Results: mx.google.com;
       spf=fail (google.com: domain of {sender} does not designate 198.51.100.7 as permitted sender) smtp.mailfrom={sender};
       dmarc=fail (p=NONE sp=NONE dis=NONE) header.from={domain}
"""
# A forger signs with a domain of their own: DKIM passes, but not for the From domain.
GMAIL_OWN_DOMAIN = """\
Authentication-Results: mx.google.com;
       dkim=pass header.i=@{domain}.evil.example header.s=s1 header.b=Zz9;
       spf=pass (google.com: domain of bounce@evil.example designates 198.51.100.7 as permitted sender) smtp.mailfrom=bounce@evil.example
"""
OUTLOOK_PASS = """\
Authentication-Results: spf=pass (sender IP is 209.85.218.44)
 smtp.mailfrom={domain}; dkim=pass (signature was verified)
 header.d={domain};dmarc=pass action=none
 header.from={domain};compauth=pass reason=100
Received-SPF: Pass (protection.outlook.com: domain of {domain} designates
 209.85.218.44 as permitted sender) receiver=protection.outlook.com;
 client-ip=209.85.218.44; helo=mail-ej1-f44.google.com; pr=C
"""
OUTLOOK_SPOOFED = """\
Authentication-Results: spf=softfail (sender IP is 198.51.100.7)
 smtp.mailfrom={domain}; dkim=none (message not signed)
 header.d=none;dmarc=fail action=quarantine
 header.from={domain};compauth=fail reason=000
Received-SPF: SoftFail (protection.outlook.com: domain of transitioning
 {domain} discourages use of 198.51.100.7 as permitted sender)
"""
# Microsoft's "implicit" composite authentication is a guess, not DMARC: not enough.
OUTLOOK_COMPAUTH_ONLY = """\
Authentication-Results: spf=none (sender IP is 198.51.100.7)
 smtp.mailfrom={domain}; dkim=none (message not signed)
 header.d=none;dmarc=none action=none header.from={domain};compauth=pass
 reason=109
"""
FASTMAIL_PASS = """\
ARC-Authentication-Results: i=1; mx6.messagingengine.com;
    dkim=pass (2048-bit rsa key sha256) header.d={domain} header.i=@{domain}
      header.b=Ab12Cd34 header.a=rsa-sha256 header.s=fm2 x-bits=2048;
    dmarc=pass policy.published-domain-policy=quarantine header.from={domain};
    spf=pass smtp.mailfrom={sender} smtp.helo=mail.{domain}
Authentication-Results: mx6.messagingengine.com;
    dkim=pass (2048-bit rsa key sha256) header.d={domain}
      header.i=@{domain} header.b=Ab12Cd34 header.a=rsa-sha256
      header.s=fm2 x-bits=2048;
    dmarc=pass policy.published-domain-policy=quarantine
      policy.applied-disposition=none policy.evaluated-disposition=none
      (p=quarantine,d=none,d.eval=none) policy.policy-from=p
      header.from={domain};
    iprev=pass smtp.remote-ip=203.0.113.5 (mail.{domain});
    spf=pass smtp.mailfrom={sender}
      smtp.helo=mail.{domain};
    x-aligned-from=pass (Address match);
    x-me-sender=none;
    x-ptr=pass smtp.helo=mail.{domain}
      policy.ptr=mail.{domain};
    x-return-mx=pass header.domain={domain} policy.is_org=yes
      (MX Records found: mx1.{domain});
    x-tls=pass smtp.version=TLSv1.3 smtp.cipher=TLS_AES_256_GCM_SHA384
      smtp.bits=256/256;
    x-vs=clean score=-100 state=0
"""
FASTMAIL_SPOOFED = """\
Authentication-Results: mx3.messagingengine.com;
    dkim=none (no signatures found);
    dmarc=fail policy.published-domain-policy=none
      policy.applied-disposition=none policy.evaluated-disposition=none
      (p=none,d=none,d.eval=none) policy.policy-from=p header.from={domain};
    iprev=fail smtp.remote-ip=198.51.100.7 (evil.example);
    spf=fail smtp.mailfrom={sender} smtp.helo=evil.example;
    x-aligned-from=pass (Address match)
"""
# What a forger writes into the mail: a perfect verdict, under whatever is on top.
FORGED = """\
Authentication-Results: {authserv};
       dkim=pass header.i=@{domain} header.s=s1 header.b=Forged;
       spf=pass smtp.mailfrom={sender};
       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from={domain}
"""

PROVIDERS = {
    # name: (pin, genuine, spoofed)
    "gmail": ("mx.google.com", GMAIL_PASS, GMAIL_SPOOFED),
    "outlook": (None, OUTLOOK_PASS, OUTLOOK_SPOOFED),
    "fastmail": ("messagingengine.com", FASTMAIL_PASS, FASTMAIL_SPOOFED),
}


def received_mail(
    top: str, sender: str, to: str, subject: str, *, forged: bool = False, authserv: str = ""
) -> bytes:
    """A mail as the provider stores it: its headers on top, then the sender's own.

    :param forged: put a forged all-pass Authentication-Results among the sender's headers.
    """
    domain = sender.rpartition("@")[2]
    own = [f"From: Alice <{sender}>", f"To: {to}", f"Subject: {subject}"]
    own += [f"Message-ID: {make_msgid(domain=domain)}", "Content-Type: text/plain"]
    lines = top.format(domain=domain, sender=sender).splitlines()
    if forged:
        lines += FORGED.format(domain=domain, sender=sender, authserv=authserv).splitlines()
    return ("\r\n".join(lines + own) + "\r\n\r\nPlease send me the report.\r\n").encode()


# -- parsing ------------------------------------------------------------------------


def test_gmail_header_is_parsed_with_its_authserv_id_and_properties():
    facts = header_facts(received_mail(GMAIL_PASS, "a@example.com", "b@gmail.com", "x"))
    parsed = parse_authentication_results(facts.authentication_results or "")
    assert parsed is not None
    assert parsed.authserv_id == "mx.google.com"
    assert [(r.method, r.result) for r in parsed.results] == [
        ("dkim", "pass"),
        ("spf", "pass"),
        ("dmarc", "pass"),
    ]
    assert parsed.results[0].get("header.i") == "@example.com"
    assert parsed.results[2].get("header.from") == "example.com"


def test_microsoft_header_without_authserv_id_is_parsed():
    parsed = parse_authentication_results(
        "spf=pass (sender IP is 1.2.3.4) smtp.mailfrom=example.com; dkim=pass "
        "(signature was verified) header.d=example.com;dmarc=pass action=none "
        "header.from=example.com;compauth=pass reason=100"
    )
    assert parsed is not None and parsed.authserv_id is None
    assert [r.method for r in parsed.results] == ["spf", "dkim", "dmarc", "compauth"]


@pytest.mark.parametrize(
    "value",
    [
        "example.net; none",
        "example.net 1; none",
        'example.net; dkim=pass reason="good; very (good)" header.d=example.com',
        "example.net; dkim=pass (comment (nested) \\) still) header.d=example.com",
        "example.net; dkim/1 = pass header.d = example.com",
    ],
)
def test_rfc_8601_forms_are_read(value):
    parsed = parse_authentication_results(value)
    assert parsed is not None and parsed.authserv_id == "example.net"
    for result in parsed.results:
        assert (result.method, result.result, result.get("header.d")) == (
            "dkim",
            "pass",
            "example.com",
        )


# -- the verdict on each provider's headers ----------------------------------------


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_genuine_mail_is_authenticated_and_spoofed_mail_is_not(provider):
    pin, genuine, spoofed = PROVIDERS[provider]
    sender = "alice@example.com"

    good = verify(received_mail(genuine, sender, "bot@x.org", "hi"), sender, pin)
    bad = verify(received_mail(spoofed, sender, "bot@x.org", "hi"), sender, pin)

    assert good.authenticated, good.reason
    assert not bad.authenticated
    assert "example.com" in bad.reason


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_a_forged_header_below_the_providers_is_never_trusted(provider):
    pin, _, spoofed = PROVIDERS[provider]
    sender = "alice@example.com"
    raw = received_mail(
        spoofed, sender, "bot@x.org", "hi", forged=True, authserv=pin or "mx.example"
    )

    assert not verify(raw, sender, pin).authenticated


def test_a_forged_header_is_refused_where_the_top_one_is_not_the_trusted_servers():
    """A server that adds no header leaves the forger's on top: the pin catches it."""
    sender = "alice@example.com"
    raw = received_mail("", sender, "bot@x.org", "hi", forged=True, authserv="mx.google.evil")

    verdict = verify(raw, sender, "mx.google.com")

    assert not verdict.authenticated
    assert "not from mx.google.com" in verdict.reason


def test_pin_matches_subdomains_of_the_trusted_server():
    raw = received_mail(FASTMAIL_PASS, "alice@example.com", "bot@x.org", "hi")
    assert verify(raw, "alice@example.com", "messagingengine.com").authenticated
    assert not verify(raw, "alice@example.com", "mx6.messagingengine.co").authenticated


@pytest.mark.parametrize(
    ("top", "why"),
    [
        (GMAIL_OWN_DOMAIN, "dkim and spf pass, but for the forger's own domains"),
        (OUTLOOK_COMPAUTH_ONLY, "compauth is Microsoft's guess, not an aligned pass"),
        ("", "no Authentication-Results header at all"),
        ("Authentication-Results: ;;;\n", "a header that says nothing"),
    ],
)
def test_unaligned_or_missing_results_are_refused(top, why):
    raw = received_mail(top, "alice@example.com", "bot@x.org", "hi")
    assert not verify(raw, "alice@example.com", None).authenticated, why


@pytest.mark.parametrize(
    ("results", "sender", "ok"),
    [
        ("dkim=pass header.d=example.com", "a@example.com", True),
        ("dkim=pass header.d=example.com", "a@eu.example.com", True),  # parent signs
        ("dkim=pass header.d=eu.example.com", "a@example.com", False),  # child cannot
        ("dkim=pass header.d=example.com", "a@badexample.com", False),
        ("dkim=pass header.d=com", "a@example.com", False),  # no TLD speaks for all
        ("spf=pass smtp.mailfrom=bounce@example.com", "a@example.com", True),
        ("spf=pass smtp.mailfrom=example.com.evil.org", "a@example.com", False),
        ("dmarc=pass header.from=example.com", "a@example.com", True),
        ("dmarc=pass header.from=other.org", "a@example.com", False),
        ("dkim=pass header.d=example.com; dmarc=fail header.from=example.com", "a@example.com", False),
        ("dkim=fail header.d=example.com; spf=softfail smtp.mailfrom=example.com", "a@example.com", False),
    ],
)  # fmt: skip
def test_alignment_rules(results, sender, ok):
    facts = header_facts(
        f"Authentication-Results: mx.example; {results}\r\nFrom: {sender}\r\n\r\n".encode()
    )
    assert check_sender(facts, sender, "mx.example").authenticated is ok


def test_two_from_headers_or_addresses_are_refused():
    top = "Authentication-Results: mx.example; dmarc=pass header.from=example.com\r\n"
    for froms in (
        "From: a@example.com\r\nFrom: b@evil.org\r\n",
        "From: a@example.com, b@evil.org\r\n",
    ):
        facts = header_facts((top + froms + "\r\nbody").encode())
        verdict = check_sender(facts, "a@example.com", "mx.example")
        assert not verdict.authenticated and "2 From addresses" in verdict.reason


def test_ten_thousand_headers_are_read_and_more_than_a_megabyte_is_refused():
    top = b"Authentication-Results: mx.example; dmarc=pass\r\n"
    junk = b"".join(b"X-Junk-%d: %s\r\n" % (n, b"v" * 50) for n in range(10000))
    sender = b"From: a@example.com\r\n\r\n"
    started = time.monotonic()

    assert verify(top + junk + sender, "a@example.com", "mx.example").authenticated
    # Past MAX_HEADER_SCAN_BYTES the From header is not seen: refused, not guessed.
    assert not verify(top + junk * 2 + sender, "a@example.com", "mx.example").authenticated
    assert time.monotonic() - started < 2


# -- settings ------------------------------------------------------------------------


def _settings(tmp_path, keys: str):
    path = tmp_path / "config.toml"
    path.write_text('[messaging.email]\nimap_username = "bot@x.org"\nimap_password = "p"\n' + keys)
    host = load_plugins()
    return load_config(path, host.adapter_classes(), host.agent_classes()).instances[0].settings


@pytest.mark.parametrize(
    ("provider", "pin"), [("gmail", "mx.google.com"), ("outlook", None), ("fastmail", "messagingengine.com")]
)  # fmt: skip
def test_provider_presets_fill_the_trusted_authserv_id(tmp_path, provider, pin):
    settings = _settings(tmp_path, f'provider = "{provider}"\nallowed_senders = ["a.org"]\n')
    assert settings.trusted_authserv_id == pin
    assert settings.sender_auth_required


def test_sender_auth_is_on_with_an_allow_list_and_can_be_turned_off(tmp_path):
    keys = 'imap_host = "localhost"\nsmtp_host = "localhost"\n'
    assert not _settings(tmp_path, keys).sender_auth_required
    assert _settings(tmp_path, keys + 'allowed_senders = ["a.org"]\n').sender_auth_required
    assert not _settings(
        tmp_path, keys + 'allowed_senders = ["a.org"]\nsender_auth = "off"\n'
    ).sender_auth_required
    assert _settings(tmp_path, keys + 'sender_auth = "on"\n').sender_auth_required


# -- end to end: real mailboxes --------------------------------------------------------


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_only_the_vouched_for_sender_is_answered(
    provider, tmp_path, dovecot, mail_accounts, smtp_relay, certs, caplog
):
    pin, genuine, spoofed = PROVIDERS[provider]
    bot, alice = mail_accounts.bot, mail_accounts.alice
    dovecot.deliver(bot.address, received_mail(genuine, alice.address, bot.address, "genuine"))
    dovecot.deliver(bot.address, received_mail(spoofed, alice.address, bot.address, "spoofed"))
    forged = received_mail(
        spoofed, alice.address, bot.address, "forged", forged=True, authserv=pin or "mx.x"
    )
    dovecot.deliver(bot.address, forged)
    pin_line = f'trusted_authserv_id = "{pin}"\n' if pin else ""
    config = write_config(
        tmp_path,
        "[messaging.email]\n"
        + instance_keys(dovecot, smtp_relay, bot, certs)
        + 'allowed_senders = ["example.com"]\n'
        + pin_line,
    )

    with caplog.at_level(logging.INFO, logger="spacebot_core"):
        assert await run_bot_once(config) == []

    [reply] = dovecot.fetch_all(alice)
    assert b"Subject: Re: genuine" in reply.raw
    rejections = [r.getMessage() for r in caplog.records if "not authenticated" in r.getMessage()]
    assert len(rejections) == 2, caplog.text
    assert all("example.com" in line and alice.address in line for line in rejections)
    assert all(m.seen for m in not_from(dovecot.fetch_all(bot), bot))


async def test_sender_auth_off_answers_allowed_senders_on_their_word(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    dovecot.deliver(bot.address, received_mail("", alice.address, bot.address, "no header"))
    config = write_config(
        tmp_path,
        "[messaging.email]\n"
        + instance_keys(dovecot, smtp_relay, bot, certs)
        + 'allowed_senders = ["example.com"]\nsender_auth = "off"\n',
    )

    assert await run_bot_once(config) == []

    [reply] = dovecot.fetch_all(alice)
    assert b"Subject: Re: no header" in reply.raw
