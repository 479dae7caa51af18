"""What every ``whost`` command shares: its errors, its options, the configuration
and the API client."""

import argparse
import os
import sys

from whost import config as cfg
from whost.config import Config
from workers.common.api import ApiClient


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
