"""The ``whost`` command: set up a writer host and look after it.

Exit codes: 0 done, 1 failed (one line saying what to do), 2 bad usage.
"""

import argparse
import contextlib
import getpass
import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from whost import config as cfg
from whost.config import Config, ConfigError, SlotEntry

EPILOG = "Exit codes: 0 done, 1 failed, 2 bad usage. README: Set up a writer host."


class Usage(Exception):
    """Bad usage: one line, exit 2."""


class Failure(Exception):
    """It did not work: one line saying what to do, exit 1."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, not argparse's usage block: the fix is in --help.
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def say(line: str = "") -> None:
    print(line, flush=True)


def tty() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


# --- common -------------------------------------------------------------------------


def common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=os.environ.get("WHOST_CONFIG") or None,
        metavar="FILE",
        help=f"whost's configuration file (WHOST_CONFIG; default {cfg.DEFAULT_CONFIG} "
        "under --root)",
    )
    parser.add_argument(
        "--root",
        default=os.environ.get("WHOST_ROOT") or "/",
        metavar="DIR",
        help="write under DIR instead of / (WHOST_ROOT): for tests and trials; "
        "nothing written there is started or applied",
    )


def paths_of(args) -> cfg.Paths:
    return cfg.Paths(args.root, args.config)


def load_config(args) -> tuple:
    paths = paths_of(args)
    return paths, cfg.load(paths.config)


def api_client(config: Config, retries: int = 1):
    from workers.common.api import ApiClient

    return ApiClient(
        config.api_url,
        config.username,
        config.password(),
        timeout=15,
        retries=retries,
        user_agent="whost",
    )


def api_failure(exc, config_url: str, username: str) -> Failure:
    if exc.status == 0:
        return Failure(
            f"cannot reach the API at {config_url}: check the URL and this host's "
            "network (whost network, whost doctor)"
        )
    if exc.status in (400, 401):
        return Failure(
            f"the API refused {username}'s password: check it (whost init), or give "
            f"the account a new one on the central site (manage.py create_account "
            f"{username} --update --write-password FILE)"
        )
    return Failure(f"the API failed: {exc}")


# --- init ---------------------------------------------------------------------------


def ask(label: str, given, default, *, option: str):
    if given:
        return given
    if tty():
        answer = input(f"{label} [{default}]: " if default else f"{label}: ").strip()
        if answer or default:
            return answer or default
    if default:
        return default
    raise Usage(f"{option} is required (or run whost init in a terminal)")


def cmd_init(args) -> int:
    from workers.common.api import ApiError
    from workers.common.worker import UsageError, parse_size

    paths = paths_of(args)
    try:
        old = cfg.load(paths.config)
    except ConfigError:
        old = Config(data_dir=paths.under("/srv/whost"))
    config = Config(
        api_url=ask("API URL", args.api, old.api_url, option="--api"),
        username=ask(
            "Writer account", args.username, old.username, option="--username"
        ),
        password_file=paths.config.parent / "password",
        host=ask(
            "This host's name",
            args.host,
            old.host or socket.gethostname(),
            option="--host",
        ),
        data_dir=Path(
            ask("Data folder", args.data_dir, str(old.data_dir), option="--data-dir")
        ).absolute(),
        space_per_slot=args.space_per_slot or old.space_per_slot,
        reserve=args.reserve or old.reserve,
        runner=old.runner,
        slots=old.slots,
    )
    for option, value in (
        ("--space-per-slot", config.space_per_slot),
        ("--reserve", config.reserve),
    ):
        try:
            parse_size(value)
        except UsageError as exc:
            raise Usage(f"{option}: {exc}") from None
    try:
        cfg.check_values(config)
    except ConfigError as exc:
        key = str(exc).split(":", 1)[0]
        option = {"api.url": "--api", "host.name": "--host"}.get(key, key)
        raise Usage(f"{option}: {str(exc).split(': ', 1)[1]}") from None
    password = read_password(args, config, old)

    if not args.no_check:
        from workers.common.api import ApiClient

        api = ApiClient(
            config.api_url,
            config.username,
            password,
            timeout=15,
            retries=1,
            user_agent="whost",
        )
        try:
            api.login()
            role = api.get("api/v1/users/me/").get("role")
        except ApiError as exc:
            raise api_failure(exc, config.api_url, config.username) from None
        if role != "writer":
            raise Failure(
                f"{config.username} has role {role!r}: a writer host needs a writer "
                f"account (manage.py create_account NAME --role writer)"
            )
        say(f"ok: logged in to {config.api_url} as {config.username}")
    try:
        config.image_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Failure(
            f"cannot make the data folder {config.data_dir}: {exc.strerror}"
        ) from None
    free = shutil.disk_usage(config.data_dir).free
    room = free // config.space_per_slot_bytes
    say(
        f"data folder {config.data_dir}: {cfg.human(free)} free, room for "
        f"{room} slot(s) at {config.space_per_slot} each"
    )
    if password != old_password(old):
        cfg.save_password(config, password)
    cfg.save(config, paths.config)
    say(
        f"wrote {paths.config} and {config.password_file} (mode 600). "
        "Next: whost slots identify"
    )
    return 0


def old_password(old: Config) -> str | None:
    try:
        return old.password()
    except ConfigError:
        return None


def read_password(args, config: Config, old: Config) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif args.password_file:
        try:
            password = Path(args.password_file).read_text().splitlines()[0]
        except (OSError, IndexError) as exc:
            raise Usage(
                f"--password-file: cannot read {args.password_file} ({exc})"
            ) from None
    else:
        password = None
        with contextlib.suppress(ConfigError):
            password = Config(password_file=config.password_file).password()
        if password is None and tty():
            password = getpass.getpass(f"Password of {config.username}: ")
        if password is None:
            raise Usage("give --password-stdin or --password-file FILE")
    if not password:
        raise Usage("the password is empty")
    return password


# --- slots --------------------------------------------------------------------------


def watch_of(args, config: Config):
    from whost.readers import UdevSource, system_disks
    from whost.slots import Watch

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
    from whost.slots import identify

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
            from tqdm import tqdm

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
    from whost.slots import table

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
    from whost.slots import check

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


# --- network ------------------------------------------------------------------------


def cmd_network(args) -> int:
    from whost import network
    from whost.config import write_atomic

    paths = paths_of(args)
    try:
        plan = network.plan(
            args.interface,
            args.method,
            getattr(args, "address", None),
            getattr(args, "gateway", None),
            getattr(args, "dns", None) or [],
            known=network.interfaces(),
        )
        backend = args.backend or network.detect()
    except network.NetworkError as exc:
        raise Usage(str(exc)) from None
    path, mode = network.target(backend, args.interface, paths.root)
    text = network.render(backend, plan)
    say(f"# {path} (mode {mode:o}, {backend})")
    sys.stdout.write(text)
    if args.dry_run:
        return 0
    if not args.yes:
        if not tty():
            raise Usage("add --yes to write it without a question (or --dry-run)")
        answer = input(
            "Write it and apply it now? A remote session may drop if the address "
            "changes. [y/N] "
        )
        if answer.strip().lower() not in {"y", "yes"}:
            raise Failure("nothing written")
    write_atomic(path, text, mode)
    if not paths.live:
        say(f"wrote {path}; not applied (under --root {paths.root})")
        return 0
    try:
        network.apply(backend, args.interface)
    except network.NetworkError as exc:
        raise Failure(f"wrote {path} but could not apply it: {exc}") from None
    say(f"wrote {path} and applied it to {args.interface}")
    return 0


# --- workers ------------------------------------------------------------------------


def service_of(args, config, paths):
    from whost.service import manager

    docker = True if getattr(args, "docker", False) else None
    if getattr(args, "systemd", False):
        docker = False
    return manager(config, paths, docker)


def cmd_start(args) -> int:
    paths, config = load_config(args)
    if not config.slots:
        raise Failure("no slot is named yet: run whost slots identify first")
    try:
        config.image_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Failure(f"cannot make {config.image_dir}: {exc.strerror}") from None
    service = service_of(args, config, paths)
    if config.runner != service.name:
        config.runner = service.name  # stop, status and logs follow it
        cfg.save(config, paths.config)
    say(service.start())
    return 0


def cmd_stop(args) -> int:
    paths, config = load_config(args)
    say(service_of(args, config, paths).stop())
    return 0


def cmd_restart(args) -> int:
    paths, config = load_config(args)
    say(service_of(args, config, paths).restart())
    return 0


def cmd_logs(args) -> int:
    import subprocess

    paths, config = load_config(args)
    command = service_of(args, config, paths).logs(args.lines, args.follow)
    try:
        return subprocess.run(command, check=False).returncode and 1
    except FileNotFoundError:
        raise Failure(f"{command[0]} is not installed") from None
    except KeyboardInterrupt:
        return 0


def cmd_status(args) -> int:
    from whost.status import fetch, table
    from workers.common.api import ApiError

    paths, config = load_config(args)
    service = service_of(args, config, paths)
    api = api_client(config)
    say(f"host {config.host}, API {config.api_url}")
    for unit, state in service.states().items():
        say(f"{unit}: {state}")
    try:
        status = fetch(api, config)
    except ApiError as exc:
        raise api_failure(exc, config.api_url, config.username) from None
    for line in status.worker_lines():
        say(line)
    for line in table(status.rows):
        say(line)
    if not args.watch:
        return 0
    return watch_status(api, config, args.watch)


def watch_status(api, config, every: float) -> int:
    """A bar per slot, refreshed from the API every ``every`` seconds."""
    from tqdm import tqdm

    from whost.status import fetch
    from workers.common.api import ApiError

    bars = {}
    try:
        while True:
            try:
                rows = fetch(api, config).rows
            except ApiError as exc:
                raise api_failure(exc, config.api_url, config.username) from None
            for index, row in enumerate(rows):
                bar = bars.get(row.slot)
                if bar is None:
                    bar = bars[row.slot] = tqdm(
                        total=100,
                        position=index,
                        unit="%",
                        bar_format="{desc:<40} {percentage:3.0f}%|{bar}| {postfix}",
                    )
                bar.set_description_str(f"{row.slot} {row.state} {row.task}"[:40])
                bar.set_postfix_str(row.message[:60], refresh=False)
                bar.n = row.percent or 0
                bar.refresh()
            time.sleep(every)
    except KeyboardInterrupt:
        return 0
    finally:
        for bar in bars.values():
            bar.close()


def cmd_doctor(args) -> int:
    from whost.doctor import Doctor

    paths = paths_of(args)
    ok = True
    for check in Doctor(paths.config).run():
        say(check.line())
        ok = ok and check.ok
    return 0 if ok else 1


# --- the parser ---------------------------------------------------------------------


def build() -> Parser:
    parser = Parser(
        prog="whost",
        description="Set up a writer host and look after it: its configuration, "
        "slot names, network, workers, and what is wrong.",
        epilog=EPILOG,
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(group, name, run, help, **kwargs):
        sub = group.add_parser(
            name, help=help, description=help, epilog=EPILOG, **kwargs
        )
        common(sub)
        sub.set_defaults(run=run)
        return sub

    init = command(
        commands,
        "init",
        cmd_init,
        "Store the API URL, the host's writer account and password (checked by "
        "logging in), the host's name and its data folder.",
    )
    init.add_argument("--api", help="the API's URL, e.g. https://imager.example.org")
    init.add_argument("--username", help="the host's account (role writer)")
    secret = init.add_mutually_exclusive_group()
    secret.add_argument(
        "--password-file", metavar="FILE", help="read the password here"
    )
    secret.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    init.add_argument("--host", help="this host's name as the API shows it")
    init.add_argument("--data-dir", help="where images are kept (default /srv/whost)")
    init.add_argument(
        "--space-per-slot", help="free space wanted per slot (default 256G)"
    )
    init.add_argument(
        "--reserve", help="free space the downloader never fills (default 2G)"
    )
    init.add_argument(
        "--no-check", action="store_true", help="do not log in to check the account"
    )

    slots = commands.add_parser(
        "slots",
        help="Name the card slots and check them.",
        description="Name the card slots by their USB port and check them.",
        epilog=EPILOG,
    )
    slots.set_defaults(run=lambda args: usage_of(slots))
    group = slots.add_subparsers(title="commands", metavar="COMMAND")
    identify = command(
        group,
        "identify",
        cmd_identify,
        "Ask for a card in each slot in turn and record which reader (USB port "
        "and LUN) it went into.",
    )
    identify.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="the slots to name, in order (default slot-1, slot-2… one per "
        "reader without a name)",
    )
    identify.add_argument("--count", type=int, help="how many slots to name")
    identify.add_argument(
        "--timeout",
        type=float,
        default=300,
        help="seconds to wait for each card (default 300)",
    )
    loops = (
        "--loop",
        {
            "action": "append",
            "metavar": "DEVICE",
            "help": "count this loop device as a card reader (demo and tests); repeat",
        },
    )
    identify.add_argument(loops[0], **loops[1])
    listing = command(
        group,
        "list",
        cmd_list,
        "List the named slots and the readers plugged in, with the card in each.",
    )
    listing.add_argument(loops[0], **loops[1])
    command(
        group,
        "check",
        cmd_check,
        "Check that each named slot finds its reader where it was named (after "
        "a reboot or a re-plug); names any slot that moved.",
    ).set_defaults(loop=[])
    rename = command(group, "rename", cmd_rename, "Rename a slot.")
    rename.add_argument("old")
    rename.add_argument("new")
    remove = command(group, "remove", cmd_remove, "Forget a slot.")
    remove.add_argument("name")

    net = commands.add_parser(
        "network",
        help="DHCP or a static address for the host's interface.",
        description="Write the host's network configuration for NetworkManager "
        "(keyfile) or systemd-networkd, and apply it after asking.",
        epilog=EPILOG,
    )
    net.set_defaults(run=lambda args: usage_of(net))
    methods = net.add_subparsers(title="methods", metavar="METHOD")
    for method, help in (
        ("dhcp", "Take the address from DHCP."),
        ("static", "A fixed address, e.g. --address 192.168.1.20/24."),
    ):
        sub = command(methods, method, cmd_network, help)
        sub.set_defaults(method=method)
        sub.add_argument("interface", help="e.g. eth0 (ls /sys/class/net)")
        if method == "static":
            sub.add_argument("--address", required=True, help="ADDRESS/PREFIX")
            sub.add_argument("--gateway", help="the router's address")
            sub.add_argument(
                "--dns", action="append", metavar="ADDRESS", help="a DNS server; repeat"
            )
        sub.add_argument("--backend", choices=["networkmanager", "networkd"])
        sub.add_argument("--dry-run", action="store_true", help="print, write nothing")
        sub.add_argument("--yes", action="store_true", help="do not ask")

    start = command(
        commands,
        "start",
        cmd_start,
        "Write and enable the workers' systemd units (they start at boot) and "
        "start them; --docker uses docker/compose.writer-host.yml instead.",
    )
    runner = start.add_mutually_exclusive_group()
    runner.add_argument("--docker", action="store_true", help="use Docker compose")
    runner.add_argument("--systemd", action="store_true", help="use systemd units")
    for name, run, help in (
        ("stop", cmd_stop, "Stop the workers (they stay stopped after a reboot)."),
        ("restart", cmd_restart, "Restart the workers with the configuration."),
    ):
        sub = command(commands, name, run, help)
        sub.add_argument("--docker", action="store_true", help="use Docker compose")
    status = command(
        commands,
        "status",
        cmd_status,
        "Each slot, the card in it, the task and its progress (from the API).",
    )
    status.add_argument(
        "--watch",
        type=float,
        metavar="SECONDS",
        help="keep showing a bar per slot, refreshed every SECONDS",
    )
    logs = command(commands, "logs", cmd_logs, "The workers' logs (journalctl).")
    logs.add_argument("-n", "--lines", type=int, default=100)
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("--docker", action="store_true", help="use Docker compose")
    command(
        commands,
        "doctor",
        cmd_doctor,
        "Check this host: root, udev, free space, API, login, warehouse, slots, "
        "clock; one line per check with a hint.",
    )
    parser.set_defaults(run=lambda args: usage_of(parser))
    return parser


def usage_of(parser) -> int:
    print(f"{parser.prog}: give a command (see {parser.prog} --help)", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    from whost.network import NetworkError
    from whost.service import ServiceError
    from whost.slots import NoCard, Refused
    from workers.common.api import ApiError

    # The API client's retry notices would add lines to whost's one-line errors.
    logging.basicConfig(level=logging.ERROR, format="whost: %(message)s")
    parser = build()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except Usage as exc:
        print(f"whost: {exc} (see whost --help)", file=sys.stderr)
        return 2
    except (
        Failure,
        ConfigError,
        ServiceError,
        NetworkError,
        Refused,
        NoCard,
        ApiError,
    ) as exc:
        print(f"whost: {exc}", file=sys.stderr)
        return 1
    except PermissionError as exc:
        print(
            f"whost: {exc.filename}: permission denied: run it with sudo",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"whost: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("whost: interrupted", file=sys.stderr)
        return 1
