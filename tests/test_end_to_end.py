"""The whole chain as separate processes on PostgreSQL and Redis, with faults:
2 orders x 2 copies; the creator is killed mid-build, the warehouse is killed
mid-upload, and a card is pulled out mid-write.

It drives the demo package's ``Chain`` (the README's first command runs the same
processes) against a database of its own. It runs once, in the PostgreSQL pass
of scripts/test.sh: the chain needs a server database and Redis anyway.
"""

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from demo.cards import LoopCardSlot, blank_card, loop_missing
from demo.catalog import ContentServer, catalog_entries, make_catalog
from demo.chain import Chain, free_port, wait_for
from workers.common.bmap import load_bmap

MIB = 1024 * 1024

POSTGRES = "postgres://postgres@127.0.0.1:5432"
# The killed creator's task comes back after this; it must stay above 30 s
# because the downloader and the writer renew every 30 s whatever --renew says.
LEASE_SECONDS = 60
# Bytes/s on the first card: its ~40 MB take 10 s, a write we can catch.
THROTTLE = 4 * 1024 * 1024
BLKIO = Path("/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device")
TOOLS = (
    "zimwriterfs",
    "sfdisk",
    "mformat",
    "mcopy",
    "mke2fs",
    "losetup",
    "docker-registry",
    "skopeo",
)


def _missing() -> str | None:
    if os.environ.get("IMAGER_TEST_DB") != "postgres":
        return "IMAGER_TEST_DB=postgres (it runs once, in the PostgreSQL pass)"
    missing = loop_missing()
    if missing:
        return missing
    tools = [tool for tool in TOOLS if shutil.which(tool) is None]
    if tools:
        return f"the tools {', '.join(tools)}"
    if not BLKIO.exists():
        return f"{BLKIO} (cgroup v1 blkio, to slow a card down so it can be pulled)"
    try:
        import psycopg
        import redis

        psycopg.connect(f"{POSTGRES}/postgres", connect_timeout=3).close()
        redis.Redis.from_url("redis://127.0.0.1:6379/0").ping()
    except Exception as exc:  # any failure means "not available"
        return f"PostgreSQL and Redis on 127.0.0.1 ({exc})"
    return None


MISSING = _missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"needs {MISSING}")


def claim_redis_db():
    """An empty Redis database of our own (1-14: the unit tests use 15), marked
    so that a chain running beside ours (another checkout) takes another one:
    two rq workers on one queue would run each other's jobs."""
    import redis

    for number in range(1, 15):
        cache = redis.Redis.from_url(f"redis://127.0.0.1:6379/{number}")
        if cache.dbsize() == 0 and cache.set("imager-e2e", os.getpid(), nx=True):
            cache.expire("imager-e2e", 3600)
            return number, cache
    pytest.fail("no empty Redis database in 1-14 for the chain")


@pytest.fixture
def database():
    """(DATABASE_URL, REDIS_URL) of a PostgreSQL database and a Redis database
    for the chain, both dropped after."""
    import psycopg

    name = f"imager_e2e_{uuid.uuid4().hex[:8]}"
    number, cache = claim_redis_db()
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES}/{name}", f"redis://127.0.0.1:6379/{number}"
    finally:
        cache.flushdb()
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def throttle(slot, rate: int) -> None:
    """Limit (rate > 0) or free (0) writes to the slot's loop device."""
    BLKIO.write_text(f"{slot.rdev} {rate}\n")


def card_equals_image(card: Path, image: Path, bmap_path: Path) -> bool:
    """Every block the bmap maps holds the image's bytes on the card."""
    bmap = load_bmap(bmap_path)
    with open(card, "rb") as got, open(image, "rb") as want:
        for start, end, _checksum in bmap.byte_ranges():
            got.seek(start)
            want.seek(start)
            left = end - start
            while left:
                size = min(left, 4 * MIB)
                if got.read(size) != want.read(size):
                    return False
                left -= size
    return True


def events(database_url: str, kind: str) -> list[tuple[str, dict]]:
    """(task id, data) of every task event of one type, from the database."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT task_id, data FROM scheduler_taskevent WHERE type = %s", (kind,)
        ).fetchall()
    return [(str(task), data) for task, data in rows]


def test_two_orders_reach_pending_shipment_through_a_killed_creator_a_cut_upload_and_a_pulled_card(  # noqa: E501
    tmp_path, database
):
    database_url, redis_url = database
    data = tmp_path / "d"
    chain = Chain(
        data,
        port=free_port(),
        ftp_port=free_port(),
        env={
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "LEASE_SECONDS": str(LEASE_SECONDS),
            "IMAGER_RENEW": "2",
        },
        poll=0.5,
        renew=2,
        sweep_interval=2,
    )
    slots: dict = {}
    content = None
    cards: list[Path] = []
    # The whole chain, faults included: about 2 min alone, but 8 GB images cross
    # FTP four times, and a busy disk has made that take over 7 min.
    deadline = time.monotonic() + 12 * 60
    alive = chain.children.check

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    try:
        chain.migrate()
        chain.accounts()
        chain.start_web()
        chain.start_jobs()
        chain.start_warehouse()
        chain.make_base_image()
        zims = make_catalog(chain.demo / "catalog", sizes=(200_000, 400_000))
        content = ContentServer(chain.demo / "catalog")
        entries = catalog_entries(zims, content.url)
        slots = {"slot-1": LoopCardSlot(), "slot-2": LoopCardSlot()}
        # The hotspot's services are OCI images of ghcr.io: a local registry
        # stands in for it (the recipes are Kiwix's, rendered by offspot-config).
        chain.start_registry()
        chain.start_creator("creator")
        chain.start_downloader()
        chain.start_writer(slots)
        orders = [
            chain.place_order(entries, quantity=2, name=f"E2E {number}")
            for number in (1, 2)
        ]

        # Fault 1: the creator dies while it builds (or hashes) an image. Its
        # lease runs out, the sweeper takes the task back, another creator
        # builds it again.
        def building():
            return next(
                (
                    t
                    for t in chain.tasks(kind="create")
                    if t["status"] == "running"
                    and t["phase"] in {"downloading content", "building", "hashing"}
                ),
                None,
            )

        killed = wait_for(
            building, "a build", timeout=left(), interval=0.2, alive=alive
        )
        chain.children.kill("creator", signal.SIGKILL)
        chain.start_creator("creator-2")

        # Fault 2: the warehouse dies mid-upload and comes back; the creator
        # resumes the upload from the .part the warehouse kept.
        def uploading():
            return next(
                (
                    t
                    for t in chain.tasks(kind="create")
                    if t["status"] == "running"
                    and t["phase"] == "uploading"
                    and 10 <= t["percent"] <= 60
                ),
                None,
            )

        wait_for(uploading, "an upload", timeout=left(), interval=0.2, alive=alive)
        chain.children.kill("warehouse", signal.SIGKILL)
        time.sleep(1)
        chain.start_warehouse()

        # The cards: the first goes into a slowed-down slot-1 and is pulled out
        # while it is written; then every empty slot gets a new card until all
        # four copies are written.
        def writes_pending():
            tasks = chain.tasks(kind="write")
            return len(tasks) == 4 and tasks

        wait_for(
            writes_pending, "4 write tasks", timeout=left(), interval=1, alive=alive
        )
        first = slots["slot-1"]
        throttle(first, THROTTLE)
        try:
            cards.append(blank_card(tmp_path / "c" / "card-0.img"))
            first.insert(cards[-1])

            def slot_writing():
                rows = chain.slots()
                # Some bytes written: the card is pulled out mid-write, not
                # before the writer opened it.
                return any(
                    s["name"] == "slot-1"
                    and s["state"] == "writing"
                    and s["percent"] >= 1
                    for s in rows
                )

            wait_for(slot_writing, "slot-1 writing", timeout=left(), interval=0.1)
            first.remove()
        finally:
            throttle(first, 0)

        def all_written():
            alive()
            for row in chain.slots():
                slot = slots.get(row["name"])
                if slot is None:
                    continue
                if slot.card is None and row["state"] == "empty":
                    cards.append(blank_card(tmp_path / "c" / f"card-{len(cards)}.img"))
                    slot.insert(cards[-1])
                elif slot.card is not None and row["state"] in {"done", "failed"}:
                    slot.remove()
            statuses = {chain.order(o)["status"] for o in orders}
            assert not statuses & {"failed", "canceled"}, statuses
            return statuses == {"pending_shipment"}

        wait_for(all_written, "every copy", timeout=left(), interval=0.5)

        tasks = chain.tasks()
        writes = [t for t in tasks if t["kind"] == "write"]
        assert len(writes) == 4
        assert {t["status"] for t in writes} == {"succeeded"}
        # The pulled card failed its copy once; the next card completed it.
        assert sum(t["card_failures"] for t in writes) == 1
        # The killed creator's task was taken back and built again.
        rebuilt = next(t for t in tasks if t["id"] == killed["id"])
        assert rebuilt["status"] == "succeeded"
        assert rebuilt["attempts"] == 1  # attempts that did not succeed
        # (A retried card is requeued too, so the killed task is one of them.)
        assert killed["id"] in {t for t, _ in events(database_url, "requeued")}
        [(_task, failure)] = events(database_url, "card_failed")
        assert failure["reason"] == "removed"
        assert "resuming" in chain.children.log("creator-2").read_text()
        # Every card holds its order's image on every mapped block.
        for task in writes:
            serial = task["card_serial"]
            card = next(c for c in cards if str(c).endswith(serial))
            folder = chain.demo / "warehouse" / "orders" / task["order"]
            assert card_equals_image(
                card, folder / "image.img", folder / "image.bmap"
            ), f"card {card.name} of copy {task['copy_number']}"
        # No task completed twice.
        succeeded = sorted(task for task, _ in events(database_url, "succeeded"))
        assert succeeded == sorted(t["id"] for t in tasks)
    finally:
        chain.stop()
        for slot in slots.values():
            slot.close()
        if content is not None:
            content.close()
        for name in sorted(chain.children.procs):
            log = chain.children.log(name)
            # Captured: pytest shows it only when the test failed.
            print(f"--- {name} ---\n{log.read_text(errors='replace')[-4000:]}")
        # 7.4 GB per image in the warehouse: pytest would keep it with tmp_path.
        # The logs stay, for a failure.
        for big in ("warehouse", "images", "creator", "creator-2", "creator-cache"):
            shutil.rmtree(chain.demo / big, ignore_errors=True)
        shutil.rmtree(tmp_path / "c", ignore_errors=True)
        subprocess.run(["sync"], check=False)
