"""``whost start|stop|restart|logs|status``: the host's workers as systemd units (or
the writer-host compose file) and what they are doing."""

import subprocess
import time

from tqdm import tqdm

from whost import config as cfg
from whost.console import Failure, api_client, api_failure, load_config, say
from whost.service import manager
from whost.status import fetch, table
from workers.common.api import ApiError


def service_of(args, config, paths):
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
    paths, config = load_config(args)
    command = service_of(args, config, paths).logs(args.lines, args.follow)
    try:
        return subprocess.run(command, check=False).returncode and 1
    except FileNotFoundError:
        raise Failure(f"{command[0]} is not installed") from None
    except KeyboardInterrupt:
        return 0


def cmd_status(args) -> int:
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
