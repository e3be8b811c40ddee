"""Where the CPU of building a reply goes: ``python -m bench.profile_compose``.

Times what the adapter does per answered mail, without servers: ``check_reply`` (its
filter, once per inbound mail), ``compose_reply`` and ``as_bytes`` (what the SMTP
client sends), over a reproducible mix of replies: every reply has a new subject and
a new sender, as in the bench's backlog, so the caches compose keeps are cold except
for the bot's own From; a fifth of the names and subjects are not ASCII, some subjects
are long enough to fold, some carry hostile values, and 15 % of the replies attach a
file. Each mail is checked when it is taken up and its reply composed :data:`IN_FLIGHT`
mails later, as the runtime works on several mails at once. The best of
:data:`REPEATS` runs counts, each run on values not seen before.

``--against OLD.py`` loads another copy of ``spacebot_email/compose.py`` (such as the
one before a change), times both, interleaved, in this process, and first checks that
both write the same bytes for every reply of the mix (with a fixed Date; half of the
replies checked first, as the adapter does, half not), or refuse the same ones. With
``--profile``, a cProfile of the whole mix, sorted by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import pstats
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.mailgen import _WORDS
from spacebot_core.errors import ChannelError
from spacebot_core.types import OutboundResponse
from spacebot_email import compose

#: How often each timing is repeated; the best run counts (the least disturbed).
REPEATS = 5
#: Mails checked but not yet answered at any time (the runtime's concurrency).
IN_FLIGHT = 16
BOT = "bot@example.com"
_NAMES = ("Alice Smith", "Bob", "O'Brien, Pat", "Zoë Müller", "李雷", "José Ñúñez", "Dr. J. Doe")
_SUBJECTS = ("Réservation pour mardi", "Заказ не получен", "Rechnung für März", "注文について")
_HOSTILE = ("a\r\nBcc: evil@example.net", "=?utf-8?q?a=0D=0ABcc:_evil@example.net?=", '"x" <y@z>')
_FILES = (
    ("report.pdf", "application/pdf"),
    ("photo.png", "image/png"),
    ("Übersicht 2024.csv", "text/csv"),
    ("notes.txt", "text/plain"),
)


def replies(count: int, run: int, seed: int = 20240605) -> list[dict[str, Any]]:
    """``count`` compose_reply arguments; ``run`` makes every subject and sender new."""
    rng = random.Random(seed * 1000 + run)
    arguments = []
    for number in range(count):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 8)))
        draw = rng.random()
        if draw < 0.2:
            subject = f"{rng.choice(_SUBJECTS)} {words} #{run}.{number}"
        elif draw < 0.25:
            subject = f"{words} {rng.choice(_HOSTILE)} #{run}.{number}"
        elif draw < 0.35:
            subject = f"{words} {words} {words} {words} {words} #{run}.{number}"  # folds
        else:
            subject = f"{'Re: ' if draw < 0.5 else ''}{words.capitalize()} #{run}.{number}"
        name = rng.choice((None, *_NAMES)) if rng.random() < 0.9 else rng.choice(_HOSTILE)
        references = [f"<ref{run}.{number}.{k}@mail.example.org>" for k in range(rng.randint(0, 4))]
        text = "\n\n".join(
            " ".join(rng.choice(_WORDS) for _ in range(rng.randint(10, 60)))
            for _ in range(rng.randint(1, 4))
        )
        if rng.random() < 0.2:
            text += "\n\nGrüße, Zoë — envoyé de mon téléphone"
        files = []
        if rng.random() < 0.15:
            filename, mime_type = rng.choice(_FILES)
            files.append(
                OutboundResponse.File(filename, rng.randbytes(rng.randint(2, 40) * 1024), mime_type)
            )
        arguments.append(
            {
                "from_address": BOT,
                "from_name": "Spacebot",
                "to": f"customer{number}.{run}@example{number % 50}.org",
                "to_name": name,
                "original_subject": subject,
                "original_message_id": f"<in{run}.{number}@mail.example.org>",
                "original_references": references,
                "text": text,
                "attachments": files,
                "message_id": compose.reply_message_id(
                    f"delivery-{run}-{number}", BOT, f"c{number}"
                ),
            }
        )
    return arguments


def answer_all(module: ModuleType, mix: list[dict[str, Any]], in_flight: int = IN_FLIGHT) -> int:
    """Check, compose and serialize each reply of ``mix`` as the adapter does; bytes out."""
    total = 0
    for index in range(len(mix) + in_flight):
        if index < len(mix):
            arguments = mix[index]
            module.check_reply(
                to=arguments["to"],
                to_name=arguments["to_name"],
                original_subject=arguments["original_subject"],
            )
        if index >= in_flight:
            total += len(module.compose_reply(**mix[index - in_flight]).as_bytes())
    return total


def best_per_reply(
    modules: dict[str, ModuleType], count: int, in_flight: int = IN_FLIGHT
) -> dict[str, float]:
    """Seconds per reply for each module, the best of :data:`REPEATS` interleaved runs."""
    best = {label: float("inf") for label in modules}
    for run in range(REPEATS):
        for offset, (label, module) in enumerate(modules.items()):
            mix = replies(count, run * 10 + offset)  # values no module has seen
            started = time.perf_counter()
            answer_all(module, mix, in_flight)
            best[label] = min(best[label], (time.perf_counter() - started) / count)
    return best


def identical_bytes(old: ModuleType, new: ModuleType, count: int) -> int:
    """How many replies of the mix (with a fixed Date) differ between the two modules."""
    date = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    differing = 0
    for index, arguments in enumerate(replies(count, 999) + replies(count, 998)):
        outputs = []
        for module in (old, new):
            try:
                if index % 2:
                    module.check_reply(
                        to=arguments["to"],
                        to_name=arguments["to_name"],
                        original_subject=arguments["original_subject"],
                    )
                message = module.compose_reply(**arguments, date=date)
                random.seed(0)  # the same multipart boundary from both
                outputs.append(message.as_bytes())
            except ChannelError as error:
                outputs.append(f"refused: {error.args[0]}".encode())
        if outputs[0] != outputs[1]:
            differing += 1
            if differing <= 3:
                print(f"differs: {arguments['original_subject']!r}")
                print(f"  {outputs[0][:1500]!r}\n  {outputs[1][:1500]!r}")
    return differing


def load(path: Path) -> ModuleType:
    """Another copy of the compose module, with caches of its own."""
    spec = importlib.util.spec_from_file_location(f"compose_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    """Time the mix (against another compose module, if given), or profile it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=2000, help="replies per run")
    parser.add_argument("--against", type=Path, help="another compose.py to compare with")
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT, help="mails in flight")
    parser.add_argument("--profile", action="store_true", help="cProfile the mix instead")
    options = parser.parse_args()
    if options.profile:
        profiler = cProfile.Profile()
        profiler.runcall(answer_all, compose, replies(options.count, 0), options.in_flight)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return
    modules = {"current": compose}
    if options.against:
        old = load(options.against)
        differing = identical_bytes(old, compose, options.count // 2)
        print(f"byte identity against {options.against}: {differing} of {options.count} differ")
        modules = {"against": old, "current": compose}
    best = best_per_reply(modules, options.count, options.in_flight)
    for label, seconds in best.items():
        print(
            f"{label:8} {seconds * 1e3:.3f} ms per reply (check_reply + compose_reply + as_bytes)"
        )
    if options.against:
        print(f"current / against: {best['current'] / best['against']:.2f}")


if __name__ == "__main__":
    main()
