"""Faults in the whole chain while orders go through, each test with orders of
its own: processes restarted mid-work (the API while a creator uploads and a
writer writes; the warehouse mid-upload and mid-download) and servers down for
``OUTAGE_SECONDS`` (Redis: e-mails wait and go out afterwards, none lost, none
twice; PostgreSQL: the API answers 503, the workers back off and carry on, the
sweeper survives and catches up). In every case nothing is lost and no task is
done twice: each succeeds at its first attempt, with one success reported and
never taken back.

The chain (tests/faults/chain.py) runs on a PostgreSQL and a Redis of its own,
so stopping them touches nobody else; one chain serves the module. Like the
end-to-end test, this runs once, in the PostgreSQL pass of scripts/test.sh.
"""

import signal
import time

import psycopg
import pytest

from demo.cards import card_verifies
from demo.chain import wait_for
from tests.faults.chain import fault_chain, skip_reason  # noqa: F401 - a fixture
from tests.faults.services import OUTAGE_SECONDS

MISSING = skip_reason()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"needs {MISSING}")

# Bytes/s on a card while the API restarts: its ~40 MB take 10 s, long enough
# for the restart to fall inside the write.
THROTTLE = 4 * 1024 * 1024
# The API stays down this long: longer than a renewal period (2 s here), so
# every worker that is busy meets the outage, not just a slow answer.
API_DOWN_SECONDS = 4


@pytest.fixture(autouse=True)
def own_orders(fault_chain):  # noqa: F811 - the fixture imported above
    """Each test's orders are its own: what a failed test leaves going is
    canceled, so that it does not take the next test's card."""
    before = len(fault_chain.placed)
    yield
    fault_chain.tidy(fault_chain.placed[before:])


def test_an_api_restarted_while_a_creator_uploads_and_a_writer_writes_loses_nothing(
    fault_chain,  # noqa: F811 - the fixture imported above
):
    chain = fault_chain
    alive = chain.children.check
    first = chain.place("API restart 1")

    def step(order, kind, phase=None, low=0, high=100):
        task = chain.task(order, kind)
        return (
            task
            and task["status"] == "running"
            and (phase is None or task["phase"] == phase)
            and low <= task["percent"] <= high
            and task
        )

    # The first order's card waits until the second one's image goes up (a
    # build of about 12 s, an upload of about 13), then both are on the move.
    wait_for(
        lambda: chain.task(first, "write"),
        "the first order's write task",
        timeout=240,
        alive=alive,
    )
    second = chain.place("API restart 2")
    wait_for(
        lambda: step(second, "create", "uploading", 0, 50),
        "the second order's upload",
        timeout=240,
        interval=0.2,
        alive=alive,
    )
    chain.throttle(THROTTLE)
    card = chain.feed_card("api-restart-1")
    wait_for(
        lambda: (s := chain.slot_state())["state"] == "writing" and s["percent"] >= 1,
        "the first order's card being written",
        timeout=60,
        interval=0.1,
        alive=alive,
    )
    assert step(second, "create", "uploading"), "the upload ended before the restart"
    workers = {name: chain.children.procs[name].pid for name in ("creator", "writer")}
    logs = {name: chain.log_size(name) for name in workers}

    chain.children.kill("web", signal.SIGTERM)
    time.sleep(API_DOWN_SECONDS)
    chain.start_web()
    chain.throttle(0)

    chain.wait_order(first, "pending_shipment", timeout=120)
    wait_for(
        lambda: chain.task(second, "write"),
        "the second order's write task",
        timeout=180,
        alive=alive,
    )
    chain.feed_card("api-restart-2")
    chain.wait_order(second, "pending_shipment", timeout=120)

    # The workers met the outage and carried on in the same processes.
    for name, pid in workers.items():
        assert chain.children.procs[name].pid == pid
        assert "API unreachable" in chain.log_since(name, logs[name]), name
    chain.done_once([first, second])
    folder = chain.demo / "warehouse" / "orders" / first
    assert card_verifies(card, folder / "image.bmap")


def test_a_warehouse_restarted_mid_upload_and_mid_download_resumes_both(
    fault_chain,  # noqa: F811 - the fixture imported above
):
    chain = fault_chain
    alive = chain.children.check
    order = chain.place("Warehouse restart")

    # 2 GB cross loopback in 3 to 13 s, faster than the progress the API
    # shows is refreshed (every renewal): the .part files tell sooner.
    built = chain.demo / "creator" / "work" / order / "image.img"
    stored = chain.demo / "warehouse" / "orders" / order / "image.img"
    downloaded = chain.demo / "images" / order / "image.img"

    def tenth_of(source, target):
        def arrived():
            part = target.with_name(target.name + ".part")
            try:  # the source is there (not renamed from its .part) once done
                return part.stat().st_size >= source.stat().st_size // 10
            except FileNotFoundError:
                return False

        return arrived

    logs = {name: chain.log_size(name) for name in ("creator", "downloader")}
    wait_for(
        tenth_of(built, stored), "the upload", timeout=240, interval=0.02, alive=alive
    )
    chain.restart("warehouse", chain.start_warehouse)
    wait_for(
        tenth_of(stored, downloaded),
        "the download",
        timeout=180,
        interval=0.02,
        alive=alive,
    )
    chain.restart("warehouse", chain.start_warehouse)
    wait_for(
        lambda: chain.task(order, "write"), "the write task", timeout=180, alive=alive
    )
    card = chain.feed_card("warehouse-restart")
    chain.wait_order(order, "pending_shipment", timeout=120)

    # Both transfers were cut and went on from where they stopped.
    for name in ("creator", "downloader"):
        assert "resuming" in chain.log_since(name, logs[name]), name
    chain.done_once([order])
    folder = chain.demo / "warehouse" / "orders" / order
    assert card_verifies(card, folder / "image.bmap")


OPERATORS = "ops@example.org"  # the chain's OPERATOR_EMAILS
RECIPIENT = "school@example.org"  # demo.chain.Chain.place_order's


def pending_notifications(chain) -> int:
    with psycopg.connect(chain.postgres.url("imager")) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM notifications_pendingnotification"
        ).fetchone()
    return count


def test_redis_down_for_a_while_loses_no_email_and_sends_none_twice(
    fault_chain,  # noqa: F811 - the fixture imported above
):
    chain = fault_chain
    alive = chain.children.check
    name = "Redis outage"
    order = chain.place(name)
    wait_for(
        lambda: (task := chain.task(order, "create")) and task["status"] == "running",
        "the build",
        timeout=120,
        alive=alive,
    )
    rqworker = chain.children.procs["rqworker"].pid
    logs = {proc: chain.log_size(proc) for proc in ("web", "rqworker")}

    chain.redis.stop()
    began = time.monotonic()
    try:
        # The whole order, e-mails and all, happens while Redis is down.
        wait_for(
            lambda: chain.task(order, "write"),
            "the write task",
            timeout=120,
            alive=alive,
        )
        chain.feed_card("redis-outage")
        chain.wait_order(order, "pending_shipment", timeout=120)
        assert chain.mails_of(order, name) == []
        assert pending_notifications(chain) >= 4
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - began)))
    finally:
        chain.redis.start()

    expected = [
        (RECIPIENT, f"Your image is ready: {name}"),
        (OPERATORS, "All cards written, ship them: " + name),
        (OPERATORS, "Card written: remove it from slot slot-1 of demo-host"),
        (OPERATORS, "Insert a card in slot slot-1 of demo-host"),
    ]

    def all_sent():
        sent = chain.mails_of(order, name)
        return sent if len(sent) >= len(expected) else None

    # The next sweeps queue what waited (SWEEP_INTERVAL 5 s), the rq worker sends.
    wait_for(all_sent, "the kept e-mails", timeout=60, alive=alive)
    time.sleep(6)  # one more sweep: nothing is queued twice
    assert sorted(chain.mails_of(order, name)) == sorted(expected)
    assert pending_notifications(chain) == 0
    # The rq worker waited for Redis in the same process; the API kept the
    # e-mails instead of failing the requests that caused them.
    assert chain.children.procs["rqworker"].pid == rqworker
    assert "Redis" in chain.log_since("rqworker", logs["rqworker"])
    assert "notification" in chain.log_since("web", logs["web"])
    chain.done_once([order])


def test_postgresql_down_for_a_while_workers_back_off_and_the_sweeper_catches_up(
    fault_chain,  # noqa: F811 - the fixture imported above
):
    chain = fault_chain
    alive = chain.children.check
    order = chain.place("PostgreSQL outage")

    def uploading():
        # The phase is reported as it starts; the upload (3 to 13 s) then ends
        # inside the outage.
        task = chain.task(order, "create")
        return task and task["status"] == "running" and task["phase"] == "uploading"

    wait_for(uploading, "the upload", timeout=180, interval=0.2, alive=alive)
    names = ("creator", "downloader", "writer", "sweeper", "warehouse", "web")
    pids = {name: chain.children.procs[name].pid for name in names}
    logs = {name: chain.log_size(name) for name in names}

    # The upload ends, the warehouse reports it and the creator reports its
    # success while the database is down.
    chain.postgres.stop()
    try:
        time.sleep(OUTAGE_SECONDS)
        alive()  # no process died of it
    finally:
        chain.postgres.start()
    restarted = chain.log_size("sweeper")

    wait_for(
        lambda: chain.task(order, "write"), "the write task", timeout=180, alive=alive
    )
    chain.feed_card("postgres-outage")
    chain.wait_order(order, "pending_shipment", timeout=120)
    # The sweeper reported the passes the outage failed, and sweeps again.
    assert "sweep failed" in chain.log_since("sweeper", logs["sweeper"])
    assert "sweep: " in chain.log_since("sweeper", restarted)

    for name, pid in pids.items():
        assert chain.children.procs[name].pid == pid, f"{name} was restarted"
    # The API said "unavailable" (503, retried), never 500 (a worker would
    # have given the task up).
    creator = chain.log_since("creator", logs["creator"])
    assert "API answered 503" in creator
    assert " 500 " not in creator
    chain.done_once([order])
