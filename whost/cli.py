"""The ``whost`` command: set up a writer host and look after it.

Exit codes: 0 done, 1 failed (one line saying what to do), 2 bad usage.
"""

import contextlib
import getpass
import logging
import shutil
import socket
import sys
from pathlib import Path

from whost import config as cfg
from whost import network
from whost.config import Config, ConfigError, write_atomic
from whost.console import (
    Failure,
    Parser,
    Usage,
    api_failure,
    ask,
    common,
    paths_of,
    say,
    tty,
)
from whost.doctor import Doctor
from whost.network import NetworkError
from whost.service import ServiceError
from whost.service_commands import (
    cmd_logs,
    cmd_restart,
    cmd_start,
    cmd_status,
    cmd_stop,
)
from whost.slot_commands import (
    cmd_check,
    cmd_identify,
    cmd_list,
    cmd_remove,
    cmd_rename,
)
from whost.slots import NoCard, Refused
from workers.common.api import ApiClient, ApiError
from workers.common.worker import UsageError, parse_size

EPILOG = "Exit codes: 0 done, 1 failed, 2 bad usage. README: Set up a writer host."


def cmd_init(args) -> int:
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


def cmd_network(args) -> int:
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


def cmd_doctor(args) -> int:
    paths = paths_of(args)
    ok = True
    for check in Doctor(paths.config).run():
        say(check.line())
        ok = ok and check.ok
    return 0 if ok else 1


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
