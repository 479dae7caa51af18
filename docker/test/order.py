"""One order through the containers that scripts/test-docker.sh started: the
warehouse and a creator (compose.site.yml), then the downloader and a writer
(compose.writer-host.yml) with a loop device as the card, to a card verified
from the host. Beside it a download order, built while the card is written,
whose image is fetched from the host through the warehouse's HTTP port with
the client's link, resumed once, and checked against its bmap.

    .venv/bin/python docker/test/order.py --data DIR --port PORT \
        --compose-site CMD --compose-host CMD [--while-running COMMAND]

DIR is the folder the demo's Chain uses: the accounts' passwords are in
DIR/demo/passwords/ (made and registered by test-docker.sh), the base image is
made at DIR/demo/base.img and the warehouse's volume is DIR/demo/warehouse, as
the compose override of the test mounts them. CMD runs docker-compose for one
of the two projects (a wrapper test-docker.sh writes). COMMAND (a shell
command) runs once the card verified, while every container still runs. At the
end the writer host's containers are stopped (kept for their logs) and the loop
device is given back. Exit 0 when the card verifies and COMMAND succeeds, 1
otherwise.
"""

from __future__ import annotations

import argparse
import grp
import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# The demo's kits (DESIGN 8: the demo/ package).
from demo.cards import CardSlotError, LoopCardSlot, blank_card, card_verifies  # noqa: E402
from demo.catalog import ContentServer, catalog_entries, make_catalog  # noqa: E402
from demo.chain import Chain, DemoError, wait_for  # noqa: E402
from demo.download import check_download  # noqa: E402
from demo.inputs import ToolError  # noqa: E402
from demo.report import Progress, report  # noqa: E402
from workers.common.api import ApiError  # noqa: E402

CARD_GROUP = "disk"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def compose(command: str, *args: str, env: dict | None = None) -> None:
    done = subprocess.run(
        [command, *args], env={**os.environ, **(env or {})}, check=False
    )
    if done.returncode != 0:
        raise DemoError(f"{Path(command).name} {' '.join(args)} failed")


def as_udev_would(device: str) -> None:
    """Group ``disk``, mode 660: what udevd's rules give every block device, so
    that the writer (uid 10001 with the disk group, no capability) can open it.
    The kernel makes loop devices root-only, and this machine runs no udevd."""
    os.chown(device, 0, grp.getgrnam(CARD_GROUP).gr_gid)
    os.chmod(device, 0o660)


def run(options) -> int:
    data = Path(options.data)
    chain = Chain(data, port=options.port, ftp_port=0)
    deadline = time.monotonic() + options.timeout
    phases: list[tuple[str, float]] = []
    started = time.monotonic()

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    def phase_done(name: str) -> None:
        nonlocal started
        phases.append((name, time.monotonic() - started))
        started = time.monotonic()

    slot = None
    content = None
    try:
        say("making the base image the creator's container gets mounted")
        chain.make_base_image()
        # On the port the creator's mirror names (compose env file).
        registry = chain.start_registry(port=options.registry_port)
        say(f"a local OCI registry on {registry.url} stands in for ghcr.io")
        say("starting the warehouse and a creator (compose.site.yml)")
        compose(options.compose_site, "up", "-d", "--no-build", "warehouse", "creator")
        zims = make_catalog(chain.demo / "catalog", sizes=(200_000, 400_000))
        content = ContentServer(chain.demo / "catalog")
        entries = catalog_entries(zims, content.url)
        slot = LoopCardSlot()
        as_udev_would(slot.device)
        say(
            f"starting the downloader and a writer (compose.writer-host.yml) "
            f"with slot-1={slot.device}, an empty loop device"
        )
        compose(
            options.compose_host, "up", "-d", "--no-build",
            env={"WRITER_SLOTS": f"slot-1={slot.device}"},
        )  # fmt: skip
        phase_done("containers")

        name = f"Docker test {datetime.now():%Y-%m-%d %H.%M.%S}"
        order_id = chain.place_order(entries, quantity=1, name=name)
        say(f"order {order_id[:8]} placed for 1 copy on an 8 GB card")
        download_id = chain.place_order(
            entries[:1], quantity=1, name=f"{name} download", kind="download"
        )
        say(f"order {download_id[:8]} placed for a download of its image")
        progress = Progress(chain, order_id)

        def not_failed() -> None:
            for placed in (order_id, download_id):
                status = chain.order(placed)["status"]
                if status in {"failed", "canceled"}:
                    raise DemoError(f"order {placed[:8]} {status}")

        def write_task():
            return any(t["kind"] == "write" for t in progress.show())

        wait_for(
            write_task, "the write task", timeout=left(), interval=1, alive=not_failed
        )
        phase_done("build, upload, download")
        card = blank_card(chain.demo / "cards" / "card-1.img")
        slot.insert(card)
        say(f"card inserted in slot-1 ({slot.device})")

        def written():
            progress.show()
            return chain.order(order_id)["status"] == "pending_shipment"

        wait_for(
            written, "the written card", timeout=left(), interval=1, alive=not_failed
        )
        phase_done("write and verify")
        slot.remove()
        print(report(chain, order_id, phases), flush=True)
        bmap = chain.demo / "warehouse" / "orders" / order_id / "image.bmap"
        if not card_verifies(card, bmap):
            raise DemoError(f"{card} does not match the bmap checksums of {bmap}")
        say(f"the card verifies from the host against {bmap.name}'s checksums")

        def built():
            return chain.order(download_id)["status"] == "built"

        wait_for(built, "the download order's image", timeout=left(), alive=not_failed)
        downloaded = check_download(chain, download_id, chain.demo / "downloads")
        print(downloaded.lines(), flush=True)
        if not downloaded.verified:
            raise DemoError(f"{downloaded.image} does not match its bmap")
        phase_done("download order")
        if options.while_running:
            say("the containers' users")
            if subprocess.run(shlex.split(options.while_running)).returncode != 0:
                raise DemoError(f"{options.while_running} failed")
        return 0
    except (DemoError, CardSlotError, ToolError, ApiError) as exc:
        print(f"order: error: {exc}", file=sys.stderr)
        return 1
    finally:
        # The writer first: the card's device can only go once nothing holds it.
        # Stopped, not removed: test-docker.sh shows their logs after a failure.
        subprocess.run([options.compose_host, "stop", "-t", "30"], check=False)
        if slot is not None:
            slot.close()
        if content is not None:
            content.close()


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (a CI job stopped) runs the clean-up of run() too: the writer host
    # stopped, the loop device given back.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the Chain's data folder")
    parser.add_argument("--port", type=int, required=True, help="the web's port")
    parser.add_argument(
        "--registry-port", type=int, required=True, help="the local registry's port"
    )
    parser.add_argument("--compose-site", required=True)
    parser.add_argument("--compose-host", required=True)
    parser.add_argument(
        "--while-running", help="a command to run once the card verified"
    )
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds for the order (600)"
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
