"""The ``spacebot`` command.

An expected failure (a wrong config, an unreachable server, a wrong password) prints
one line that says what went wrong and what to do, and no traceback; ``-v`` adds the
detail, and ``--trace`` the IMAP and SMTP exchanges. A config error exits with status 2,
before anything connects.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import mimetypes
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from spacebot_core.config import Config, find_config_path, load_config
from spacebot_core.errors import ConfigError, PluginError, SpacebotError
from spacebot_core.plugins import PluginHost, load_plugins
from spacebot_core.runtime import Runtime, describe_error
from spacebot_core.search_command import add_search_command
from spacebot_core.state_commands import add_state_commands
from spacebot_core.store import StateStore
from spacebot_core.types import AnyResponse, OutboundResponse

log = logging.getLogger("spacebot")

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def _common_options() -> argparse.ArgumentParser:
    """Options that may stand before or after the subcommand (``spacebot run -v``).

    Their defaults are suppressed here and set once on the main parser, so that a
    subcommand that does not repeat an option keeps what was given before it.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="config file (default: $SPACEBOT_CONFIG, else ./config.toml)",
    )
    common.add_argument(
        "--log-level",
        default=argparse.SUPPRESS,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much to log (default: INFO)",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log at DEBUG level and show the detail of errors",
    )
    common.add_argument(
        "--trace",
        action="store_true",
        default=argparse.SUPPRESS,
        help="with -v, also log the IMAP and SMTP exchanges (they hold whole mails)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``spacebot`` and its subcommands."""
    # Two copies: parents share their option objects, and set_defaults on the main
    # parser would otherwise hand its defaults to every subcommand too.
    parser = argparse.ArgumentParser(
        prog="spacebot",
        description="Connect agents to chat channels such as email.",
        parents=[_common_options()],
    )
    parser.set_defaults(config=None, log_level="INFO", verbose=False, trace=False)
    common = _common_options()
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add_command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, parents=[common])

    run = add_command("run", "answer messages until stopped (Ctrl-C)")
    run.add_argument(
        "--once",
        action="store_true",
        help="one poll cycle of every instance, everything found handled, then exit",
    )
    run.set_defaults(handler=command_run)

    check = add_command("check", "connect each instance and report what works")
    check.set_defaults(handler=command_check)

    adapters = add_command("adapters", "list adapter types, agent kinds and instances")
    adapters.set_defaults(handler=command_adapters)

    send = add_command("send", "send a message that answers nothing")
    send.add_argument(
        "target", metavar="TARGET", help="channel:address, e.g. email:alice@example.com"
    )
    send.add_argument("text", metavar="TEXT", help="the message text")
    send.add_argument(
        "--adapter", metavar="KEY", help="runtime_key of the instance to send through"
    )
    send.add_argument("--attach", metavar="FILE", type=Path, help="a file to attach")
    send.set_defaults(handler=command_send)

    demo = add_command("demo", "see it work: a mail in, the agent's answer back")
    demo.add_argument(
        "--serve",
        action="store_true",
        help="keep the servers and the bot running for a desktop mail client",
    )
    demo.set_defaults(handler=command_demo)

    init = add_command("init", "write a commented starter config.toml for a mail provider")
    init.add_argument(
        "--provider",
        choices=["gmail", "outlook", "fastmail", "custom"],
        default="custom",
        help="fill in the provider's servers (default: custom, servers to fill in)",
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(handler=command_init)

    add_state_commands(add_command, _load, _with_runtime)
    add_search_command(add_command, _load)
    return parser


class StopRequested(Exception):
    """SIGTERM came before the runtime installed its own handler (while starting)."""


def _stop_requested(signal_number: int, frame: object) -> None:
    raise StopRequested


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    # Until the runtime takes SIGTERM over (it finishes the message in hand), a
    # service manager's stop still ends the process cleanly, not with a traceback.
    signal.signal(signal.SIGTERM, _stop_requested)
    arguments = build_parser().parse_args(argv)
    _configure_logging(
        "DEBUG" if arguments.verbose or arguments.trace else arguments.log_level,
        trace=arguments.trace,
    )
    handler: Callable[[argparse.Namespace], int] = arguments.handler
    try:
        return handler(arguments)
    except (ConfigError, PluginError) as error:
        return _fail(error, arguments, EXIT_CONFIG)
    except SpacebotError as error:
        return _fail(error, arguments, EXIT_FAILURE)
    except StopRequested:
        log.info("stopped before it had started")
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_FAILURE


def _fail(error: Exception, arguments: argparse.Namespace, status: int) -> int:
    if arguments.verbose:
        log.exception("detail of the error below")
    print(f"spacebot: error: {error}", file=sys.stderr)
    return status


#: Libraries that log protocol exchanges (whole mails, at DEBUG) or routine events (at
#: INFO); shown only with ``--trace``, since mail is private even when -v is needed.
PROTOCOL_LOGGERS = ("aioimaplib", "aiosmtplib", "mail.log", "pymap", "proxyprotocol")


def _configure_logging(level: str, *, trace: bool = False) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if not trace:
        for name in PROTOCOL_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def _load(arguments: argparse.Namespace) -> tuple[PluginHost, Config]:
    host = load_plugins()
    config = load_config(
        find_config_path(arguments.config), host.adapter_classes(), host.agent_classes()
    )
    return host, config


def _with_runtime(arguments: argparse.Namespace, exclusive: bool, work: Callable) -> int:
    host, config = _load(arguments)
    store = StateStore.open(config.state_dir, exclusive=exclusive)
    try:
        return asyncio.run(work(Runtime.create(config, host, store)))
    finally:
        store.close()


def command_run(arguments: argparse.Namespace) -> int:
    """``spacebot run [--once]``."""

    async def work(runtime: Runtime) -> int:
        if not arguments.once:
            await runtime.run_forever()
            return EXIT_OK
        failures = await runtime.run_once()
        for runtime_key, error in failures:
            print(f"spacebot: {runtime_key}: {describe_error(error)}", file=sys.stderr)
        return EXIT_FAILURE if failures else EXIT_OK

    return _with_runtime(arguments, True, work)


def command_check(arguments: argparse.Namespace) -> int:
    """``spacebot check``: every step of every instance, in the user's words."""

    async def work(runtime: Runtime) -> int:
        all_ok = True
        for runtime_key, results in (await runtime.check()).items():
            print(f"{runtime_key}:")
            for result in results:
                print(f"  {result.line()}")
                all_ok = all_ok and result.ok
        print("everything works" if all_ok else "some checks failed: see the fixes above")
        return EXIT_OK if all_ok else EXIT_FAILURE

    return _with_runtime(arguments, False, work)


def command_adapters(arguments: argparse.Namespace) -> int:
    """``spacebot adapters``: what is installed and what is configured."""
    host = load_plugins()
    print("adapter types:")
    for name, registration in sorted(host.adapter_types.items()):
        print(f"  {name:<12} {registration.distribution} {registration.version}")
    print("agent kinds:")
    for name, registration in sorted(host.agent_kinds.items()):
        print(f"  {name:<12} {registration.distribution} {registration.version}")
    for failure in host.failures:
        print(f"plugin {failure.plugin_name!r} failed to load: {failure.error}")
    path = find_config_path(arguments.config)
    if not path.exists():
        print(f"configured instances: none ({path} not found)")
        return EXIT_OK
    config = load_config(path, host.adapter_classes(), host.agent_classes())
    print(f"configured instances ({path}):")
    for instance in config.instances:
        print(f"  {instance.runtime_key:<16} channel {instance.channel}")
    return EXIT_OK


def command_send(arguments: argparse.Namespace) -> int:
    """``spacebot send [--adapter KEY] TARGET TEXT [--attach FILE]``."""
    channel, separator, address = arguments.target.partition(":")
    if not separator or not address:
        raise ConfigError(
            f"target {arguments.target!r} must be channel:address, e.g. email:alice@example.com"
        )
    responses = _send_responses(arguments.text, arguments.attach)

    async def work(runtime: Runtime) -> int:
        runtime_key = arguments.adapter or _primary_instance(runtime.config, channel)
        await runtime.broadcast(runtime_key, address, responses)
        print(f"sent to {address} through {runtime_key}")
        return EXIT_OK

    return _with_runtime(arguments, False, work)


def _send_responses(text: str, attachment: Path | None) -> list[AnyResponse]:
    if attachment is None:
        return [OutboundResponse.Text(text)]
    try:
        data = attachment.read_bytes()
    except OSError as error:
        raise SpacebotError(f"cannot read {attachment}: {error.strerror}") from None
    mime_type = mimetypes.guess_type(attachment.name)[0] or "application/octet-stream"
    return [OutboundResponse.File(attachment.name, data, mime_type, caption=text)]


def _primary_instance(config: Config, channel: str) -> str:
    keys = [instance.runtime_key for instance in config.instances if instance.channel == channel]
    if not keys:
        raise ConfigError(
            f"{config.path}: no enabled [messaging.{channel}] instance to send through"
        )
    return channel if channel in keys else keys[0]


def command_demo(arguments: argparse.Namespace) -> int:
    """``spacebot demo [--serve]``: the email channel against embedded servers."""
    from spacebot_email.demo import run_demo

    return run_demo(serve=arguments.serve)


def command_init(arguments: argparse.Namespace) -> int:
    """``spacebot init [--provider NAME] [--force]``: the file at --config or ./config.toml."""
    from spacebot_core.init_config import write_starter_config

    path = find_config_path(arguments.config)
    print(write_starter_config(path, arguments.provider, arguments.force).next_steps())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
