#!/usr/bin/env python3
"""The whole chain on one machine: web service, background jobs, warehouse,
creator, downloader and writer on loopback, a catalog of real ZIM files served
over HTTP, one order for 2 copies and one download order. The cards are sparse
8 GB files: attached as loop devices when it runs as root (the writer then sees
block devices and their kernel events, as with real readers), in file slots
otherwise (it says so). The download order's image is fetched with the link
its client gets, over HTTP from the warehouse, and checked against its bmap.

    .venv/bin/python scripts/demo.py [--exit] [--port 8000] [--ftp-port 2121]
        [--http-port 2180]

``scripts/up.sh`` runs it after the set-up. Every child runs in its own process
group with its output in ``data/demo/logs/NAME.log``; Ctrl-C or SIGTERM stops
them all (SIGTERM, then SIGKILL after a grace period). A second run reuses
``data/``: accounts are kept, the catalog and base image are made once.

A command line over the ``demo`` package, whose ``Chain`` the end-to-end test
(tests/test_end_to_end.py) drives too. Plain Python (no Django import), like
the workers: it talks to the API.

Exit codes: 0 done (or stopped with Ctrl-C), 1 the chain failed, 2 bad option
or missing prerequisite (a tool to make the base image or the catalog).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from demo.cards import (  # noqa: E402
    CardSlotError,
    FileCardSlot,
    LoopCardSlot,
    add_card_slots,
    blank_card,
)
from demo.catalog import ContentServer, catalog_entries, make_catalog  # noqa: E402
from demo.chain import Chain, DemoError, wait_for  # noqa: E402
from demo.download import check_download  # noqa: E402
from demo.inputs import ToolError  # noqa: E402
from demo.report import Progress, report, say  # noqa: E402
from workers.common.api import ApiError  # noqa: E402
from workers.common.names import OrderStatus, TaskKind  # noqa: E402

# -- the demo ------------------------------------------------------------------------


def run_demo(options) -> int:
    data = Path(options.data_dir).resolve()
    chain = Chain(
        data,
        port=options.port,
        ftp_port=options.ftp_port,
        http_port=options.http_port,
    )
    # What a previous demo run left in flight is of no use to this one: its
    # images (about 2 GB each, sized to their content) fill the warehouse.
    for leftover in ("warehouse", "images", "creator", "cards", "slots", "downloads"):
        shutil.rmtree(chain.demo / leftover, ignore_errors=True)
    slots: dict[str, LoopCardSlot | FileCardSlot] = {}
    servers: list[ContentServer] = []

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        chain_once(chain, slots, servers)
        if options.exit:
            return 0
        login = chain.password_file("demo").read_text().strip()
        print(
            f"\n  The service keeps running: {chain.url}/  (login demo / {login})\n"
            f"  Logs: {chain.children.logs}   Ctrl-C stops everything.\n",
            flush=True,
        )
        while True:
            chain.children.check()
            time.sleep(1)
    except (DemoError, CardSlotError, ApiError) as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    except ToolError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        say("stopping")
        return 0
    finally:
        # A second Ctrl-C must not leave children or cards in slots behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        chain.stop()
        for slot in slots.values():
            slot.close()
        for server in servers:
            server.close()


def chain_once(
    chain: Chain,
    slots: dict[str, LoopCardSlot | FileCardSlot],
    servers: list[ContentServer],
) -> None:
    """Start everything, run one order of 2 copies and one download order,
    print the table and the download order's link."""
    phases: list[tuple[str, float]] = []
    started = time.monotonic()

    def phase_done(name: str) -> None:
        nonlocal started
        phases.append((name, time.monotonic() - started))
        started = time.monotonic()

    say("migrating the database and creating the demo accounts")
    chain.migrate()
    chain.accounts()
    phase_done("set-up")
    say(f"starting the web service on {chain.url} and the background jobs")
    chain.start_web()
    chain.start_jobs()
    say(
        f"starting the warehouse on ftp://127.0.0.1:{chain.ftp_port}, its download "
        f"links on http://127.0.0.1:{chain.http_port}"
    )
    chain.start_warehouse()
    phase_done("services")
    say("making the base image and a catalog of 3 real ZIM files")
    chain.make_base_image()
    zims = make_catalog(chain.demo / "catalog")
    servers.append(ContentServer(chain.demo / "catalog"))
    entries = catalog_entries(zims, servers[0].url)
    phase_done("catalog")
    say(add_card_slots(slots, chain.demo, ["slot-1", "slot-2"]))
    registry = chain.start_registry()
    say(
        f"a local OCI registry on {registry.url} stands in for ghcr.io: the "
        "hotspot's services are OCI images this machine cannot download"
    )
    say("starting a creator, a downloader and a writer with 2 slots")
    chain.start_creator()
    chain.start_downloader()
    chain.start_writer(slots)
    name = f"Demo {datetime.now():%Y-%m-%d %H.%M.%S}"
    order_id = chain.place_order(entries, quantity=2, name=name)
    say(f"order {order_id[:8]} placed for 2 copies on 8 GB cards")
    # Built after the first one, while its copies are downloaded and written.
    download_id = chain.place_order(
        entries[:1], quantity=1, name=f"{name} download", kind="download"
    )
    say(f"order {download_id[:8]} placed for a download of its image (one ZIM)")
    progress = Progress(chain, order_id, prefix=f"{order_id[:8]} ")
    fetch_progress = Progress(chain, download_id, prefix=f"{download_id[:8]} ")
    alive = chain.children.check

    def writes_exist():
        tasks = progress.show()
        fetch_progress.show()
        return len([t for t in tasks if t["kind"] == TaskKind.WRITE]) == 2

    wait_for(writes_exist, "the write tasks", timeout=1800, interval=1, alive=alive)
    phase_done("build, upload, download")
    for number, (slot_name, slot) in enumerate(slots.items(), 1):
        card = blank_card(chain.demo / "cards" / f"card-{number}.img")
        slot.insert(card)
        say(f"card {number} inserted in {slot_name} ({slot.device})")

    def shipped():
        progress.show()
        fetch_progress.show()
        status = chain.order(order_id)["status"]
        if status in {OrderStatus.FAILED, OrderStatus.CANCELED}:
            raise DemoError(f"order {order_id[:8]} {status}; see the logs")
        return status == OrderStatus.PENDING_SHIPMENT

    wait_for(shipped, "both copies", timeout=1800, interval=1, alive=alive)
    phase_done("write and verify")
    for slot in slots.values():
        slot.remove()

    def built():
        fetch_progress.show()
        status = chain.order(download_id)["status"]
        if status in {OrderStatus.FAILED, OrderStatus.CANCELED}:
            raise DemoError(f"order {download_id[:8]} {status}; see the logs")
        return status == OrderStatus.BUILT

    wait_for(built, "the download order's image", timeout=1800, interval=1, alive=alive)
    downloaded = check_download(chain, download_id, chain.demo / "downloads")
    if not downloaded.verified:
        raise DemoError(f"{downloaded.image} does not match its bmap's checksums")
    phase_done("download order")
    print(report(chain, order_id, phases), flush=True)
    print(downloaded.lines(), flush=True)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="demo", description="Run one order through the whole chain locally."
    )
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT", 8000)),
        help="web service port (PORT, default 8000)",
    )  # fmt: skip
    parser.add_argument(
        "--ftp-port", type=int, default=2121, help="warehouse port (default 2121)"
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=int(os.environ.get("HTTP_PORT", 2180)),
        help="warehouse's download links port (HTTP_PORT, default 2180)",
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("IMAGER_DATA_DIR", str(ROOT / "data")),
        help="data folder (IMAGER_DATA_DIR, default ./data)",
    )
    parser.add_argument(
        "--exit", action="store_true", help="stop everything after the table"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    options = parser().parse_args(argv)
    for flag, port in (
        ("--port", options.port),
        ("--ftp-port", options.ftp_port),
        ("--http-port", options.http_port),
    ):
        if not 1 <= port <= 65535:
            print(f"demo: error: {flag} must be 1-65535", file=sys.stderr)
            return 2
    return run_demo(options)


if __name__ == "__main__":
    sys.exit(main())
