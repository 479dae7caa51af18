"""``whost slots …``: name the slots by the reader a card goes into, list, check,
rename and remove them."""

import sys

from tqdm import tqdm

from whost import config as cfg
from whost.config import Config, SlotEntry
from whost.console import Failure, Usage, load_config, say
from whost.readers import UdevSource, system_disks
from whost.slots import Watch, check, identify, table


def watch_of(args, config: Config):
    try:
        source = UdevSource()
    except (ImportError, OSError) as exc:
        raise Failure(
            f"cannot watch the readers through udev ({exc}): whost doctor says why"
        ) from None
    loops = list(args.loop or ())
    loops += [
        s.path for s in config.slots.values() if s.path.startswith(cfg.LOOP_PREFIX)
    ]
    return Watch(source, loops=loops, exclude=system_disks())


def cmd_identify(args) -> int:
    for name in args.names:
        if not cfg.NAME.match(name):
            raise Usage(
                f"{name!r}: a slot name has 1-50 letters, digits, '.', '_', '-'"
            )
    if len(set(args.names)) != len(args.names):
        raise Usage("a slot name is given twice")
    paths, config = load_config(args)
    watch = watch_of(args, config)
    names = list(args.names) or new_names(config, watch, args.count)
    bars = Countdown(args.timeout)
    count = 0
    try:
        for entry in identify(
            config, watch, names, timeout=args.timeout, say=bars.say, ticking=bars.tick
        ):
            # Saved at once: an interruption keeps the slots named so far.
            config.slots[entry.name] = entry
            cfg.save(config, paths.config)
            count += 1
    finally:
        bars.close()
    say(
        f"named {count} slot(s) in {paths.config}. whost start (or whost restart) "
        "makes the writer use them"
    )
    return 0


def new_names(config: Config, watch, count: int | None) -> list[str]:
    if not count:
        named = {s.path for s in config.slots.values()}
        count = len([d for d in watch.readers() if d.path and d.path not in named])
        if not count:
            raise Failure(
                "every reader plugged in has a name already (or none is plugged in): "
                "plug the readers in (whost slots list shows them), or give names: "
                "whost slots identify NAME"
            )
    names, number = [], 1
    while len(names) < count:
        name = f"slot-{number}"
        if name not in config.slots:
            names.append(name)
        number += 1
    return names


class Countdown:
    """A bar per slot while waiting for its card, in a terminal only."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.bar = None
        self.enabled = sys.stderr.isatty()

    def say(self, line: str) -> None:
        self.close()
        say(line)

    def tick(self, elapsed: float) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = tqdm(
                total=int(self.timeout),
                desc="waiting for the card",
                unit="s",
                leave=False,
                bar_format="{desc} {bar} {n:.0f}/{total} s",
            )
        self.bar.n = min(elapsed, self.timeout)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_list(args) -> int:
    _, config = load_config(args)
    watch = watch_of(args, config)
    rows = [("slot", "reader", "stable path", "card"), *table(config, watch.readers())]
    if len(rows) == 1:
        say("no slot is named and no reader is plugged in")
        return 0
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        say("  ".join(row[i].ljust(widths[i]) for i in range(3)) + "  " + row[3])
    return 0


def cmd_check(args) -> int:
    _, config = load_config(args)
    if not config.slots:
        raise Failure("no slot is named yet: run whost slots identify")
    findings = check(config, watch_of(args, config).readers())
    for finding in findings:
        label = "ok" if finding.state == "ok" else finding.state.upper()
        say(f"{label} {finding.message}")
    bad = [f for f in findings if f.state != "ok"]
    return 1 if bad else 0


def cmd_rename(args) -> int:
    paths, config = load_config(args)
    if args.old not in config.slots:
        raise Failure(f"there is no slot {args.old} (whost slots list)")
    if not cfg.NAME.match(args.new):
        raise Usage(
            f"{args.new!r}: a slot name has 1-50 letters, digits, '.', '_', '-'"
        )
    if args.new in config.slots:
        raise Failure(
            f"{args.new} names another slot already: remove or rename it first"
        )
    config.slots = {
        (args.new if name == args.old else name): (
            SlotEntry(**{**vars(slot), "name": args.new}) if name == args.old else slot
        )
        for name, slot in config.slots.items()
    }
    cfg.save(config, paths.config)
    say(f"renamed {args.old} to {args.new}; whost restart makes the writer use it")
    return 0


def cmd_remove(args) -> int:
    paths, config = load_config(args)
    if args.name not in config.slots:
        raise Failure(f"there is no slot {args.name} (whost slots list)")
    del config.slots[args.name]
    cfg.save(config, paths.config)
    say(f"removed {args.name}; whost restart makes the writer forget it")
    return 0
