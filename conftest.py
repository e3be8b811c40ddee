"""Fixtures shared by all tests: real mail servers on 127.0.0.1.

- ``certs`` / ``untrusted_certs`` (session): `CertFiles` from two unrelated CAs.
- ``dovecot`` (function): the running `DovecotServer` of the session
  (``dovecot_session``), started again if a test left it stopped.
- ``mail_accounts`` (function): fresh ``bot`` and ``alice`` `Account` objects.
- ``smtp_relay`` (function): a running `SmtpRelay` with STARTTLS and AUTH for the
  ``mail_accounts`` logins, delivering into ``dovecot``.
- ``make_smtp_relay`` (function): builds and starts more relays in other modes.

Without Dovecot installed, the fixtures needing it skip, except on CI (``CI`` set),
where they fail: a CI run must not pass by skipping its real-server tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from spacebot_email.testing import (
    CertFiles,
    DovecotNotInstalled,
    DovecotServer,
    MailAccounts,
    SmtpRelay,
    make_certs,
    make_untrusted_certs,
)


def pytest_configure(config: pytest.Config) -> None:
    """Silence aiosmtpd's warning for relays that allow AUTH without STARTTLS on purpose.

    Implicit-TLS relays are encrypted from the first byte, which aiosmtpd does not count,
    and plaintext AUTH on loopback is what those tests are for.
    """
    config.addinivalue_line(
        "filterwarnings", "ignore:Requiring AUTH while not requiring TLS:UserWarning"
    )


def _on_ci() -> bool:
    """Whether this run is a CI run (the ``CI`` environment variable is set and true)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    """A server certificate for localhost and 127.0.0.1, and the CA clients must trust."""
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def untrusted_certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    """Certificates from a CA that ``certs`` does not know: to test refusal."""
    return make_untrusted_certs(tmp_path_factory.mktemp("untrusted-certs"))


@pytest.fixture(scope="session")
def dovecot_session(certs: CertFiles) -> Iterator[DovecotServer]:
    """One Dovecot for the whole run (tests use ``dovecot``, which keeps it running)."""
    try:
        server = DovecotServer(certs=certs)
    except DovecotNotInstalled as missing:
        if _on_ci():
            pytest.fail(str(missing), pytrace=False)
        pytest.skip(str(missing))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def dovecot(dovecot_session: DovecotServer) -> Iterator[DovecotServer]:
    """The session's running Dovecot; started again after a test that left it stopped."""
    if not dovecot_session.running:
        dovecot_session.start()
    yield dovecot_session
    if not dovecot_session.running:
        dovecot_session.start()


@pytest.fixture
def mail_accounts(dovecot: DovecotServer) -> MailAccounts:
    """A fresh ``bot`` and ``alice``, unique to this test, with empty mailboxes."""
    return dovecot.new_accounts()


@pytest.fixture
def make_smtp_relay(
    request: pytest.FixtureRequest, certs: CertFiles
) -> Iterator[Callable[..., SmtpRelay]]:
    """A factory for started relays: ``make_smtp_relay(tls="implicit", credentials=...)``.

    It takes `SmtpRelay`'s arguments; ``certs`` defaults to the session's and
    ``deliver`` to ``dovecot.deliver`` (Dovecot is only started when that default is
    used, so a relay delivering elsewhere, e.g. into pymap, does not need it). Every
    relay made is stopped after the test.
    """
    relays: list[SmtpRelay] = []

    def make(**options: Any) -> SmtpRelay:
        if "deliver" not in options:
            options["deliver"] = request.getfixturevalue("dovecot").deliver
        options.setdefault("certs", certs)
        relay = SmtpRelay(**options)
        relays.append(relay)
        relay.start()
        return relay

    try:
        yield make
    finally:
        for relay in relays:
            relay.stop()


@pytest.fixture
def smtp_relay(make_smtp_relay: Callable[..., SmtpRelay], mail_accounts: MailAccounts) -> SmtpRelay:
    """A relay like a provider's submission port: STARTTLS, then AUTH as bot or alice."""
    return make_smtp_relay(
        tls="starttls",
        credentials={
            account.address: account.password
            for account in (mail_accounts.bot, mail_accounts.alice)
        },
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Add the end of Dovecot's log to the report of a failed test that used it."""
    report = yield
    server = getattr(item, "funcargs", {}).get("dovecot_session")
    if report.failed and isinstance(server, DovecotServer):
        report.sections.append(("dovecot log", server.log_tail()))
    return report
