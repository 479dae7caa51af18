"""Operators' pages benchmark: the order list and the workshop board over 1,000 orders.

    .venv/bin/python bench/ops_bench.py [--orders 1000] [--rounds 200]
        [--backends sqlite postgres]

For each backend a fresh database (a SQLite file in a temporary folder, or the
PostgreSQL database ``imager_ops_bench`` on 127.0.0.1:5432, user postgres) is
migrated and loaded, in one child process, with a small workshop first (20 orders,
one writer host of 4 slots) and then a grown one (``--orders`` orders in every
status from 50 clients, each with its create task and 1 to 5 copies, a recipe of
50 KB, 4 writer hosts of 8 slots with cards being written, done and failed, and a
history of written cards in every slot).

Each page is asked ``--rounds`` times (after 10 warm-up requests) by Django's test
client as a logged-in manager: the whole WSGI handler, every middleware, the view
and its template, in process (no HTTP parsing). Server time is what the bench
middleware measures around the middleware chain (``X-Bench-Ms``,
bench/bench_urls.py), and so are the queries (``X-Bench-Queries``), counted on
the small and on the grown workshop. The baseline, in the same run: a bare page,
``ops/page.html`` behind the same login check with no data (session, user,
navigation, layout).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.backends import p95, run_backend  # noqa: E402

PG_DATABASE = "imager_ops_bench"
RECIPE_BYTES = 50_000


def load(orders: int, hosts: int, slots: int, seed: int) -> dict:
    """A workshop of ``orders`` orders and ``hosts`` writer hosts; returns what the
    pages are asked with."""
    from django.utils import timezone

    from apps.accounts.models import Role, User
    from apps.orders.cards import usable_bytes
    from apps.orders.models import Configuration, Order, OrderStatus
    from apps.scheduler.models import (
        Slot,
        SlotState,
        Task,
        TaskKind,
        TaskStatus,
        Warehouse,
        Worker,
        WorkerKind,
    )

    rng = random.Random(seed)  # noqa: S311 - a reproducible mix, not a secret
    now = timezone.now()
    tag = f"{orders}-{hosts}"
    clients = User.objects.bulk_create(
        [
            User(username=f"client-{tag}-{n}", role=Role.CLIENT, email=f"c{n}@x.org")
            for n in range(min(50, orders))
        ]
    )
    config = Configuration.objects.create(
        owner=clients[0],
        name=f"School kit {tag}",
        ssid="Kiwix",
        admin_password="hotspot-admin-pw",  # noqa: S106 - a throw-away database
        contents=[
            {
                "title": f"Wikipedia {n}",
                "url": f"https://download.kiwix.org/zim/w{n}.zim",
                "size": 10**9,
                "sha256": "a" * 64,
            }
            for n in range(20)
        ],
    )
    statuses = (
        [OrderStatus.PENDING] * 10
        + [OrderStatus.BUILDING] * 5
        + [OrderStatus.BUILT] * 10
        + [OrderStatus.WRITING] * 30
        + [OrderStatus.PENDING_SHIPMENT] * 10
        + [OrderStatus.SHIPPED] * 25
        + [OrderStatus.CANCELED, OrderStatus.FAILED] * 5
    )
    recipe = "x" * RECIPE_BYTES
    made = Order.objects.bulk_create(
        [
            Order(
                owner=rng.choice(clients),
                configuration=config,
                config=config.snapshot(),
                card_size_gb=rng.choice([8, 16, 32, 64]),
                quantity=rng.randint(1, 5),
                recipe=recipe,
                recipient_name=f"School {n}",
                recipient_email=f"school{n}@example.org",
                shipping_address="1 rue de l'Ecole\n75001 Paris",
                status=rng.choice(statuses),
                created_at=now - timedelta(minutes=n),
            )
            for n in range(orders)
        ]
    )
    warehouse_account = User.objects.create(
        username=f"warehouse-{tag}", role=Role.WAREHOUSE
    )
    Warehouse.objects.create(
        name=f"main-{tag}",
        account=warehouse_account,
        ftp_url="ftp://127.0.0.1:2121",
        capacity_bytes=10**13,
        free_bytes=6 * 10**12,
    )
    writers = []
    for number in range(hosts):
        account = User.objects.create(username=f"host-{tag}-{number}", role=Role.WRITER)
        writer = Worker.objects.create(
            account=account, kind=WorkerKind.WRITER, host=f"host-{tag}-{number}"
        )
        Slot.objects.bulk_create(
            [
                Slot(worker=writer, name=f"slot-{n}", device_path=f"/dev/x{n}")
                for n in range(slots)
            ]
        )
        writers.append(writer)
    tasks = []
    written = OrderStatus.PENDING_SHIPMENT, OrderStatus.SHIPPED
    for order in made:
        built = order.status not in {OrderStatus.PENDING, OrderStatus.BUILDING}
        tasks.append(
            Task(
                order=order,
                kind=TaskKind.CREATE,
                status=TaskStatus.SUCCEEDED if built else TaskStatus.PENDING,
                percent=100 if built else 0,
                log_tail="build log line\n" * 100,
            )
        )
        if order.status in {OrderStatus.BUILT, OrderStatus.WRITING, *written}:
            host = rng.choice(writers).host
            for copy in range(1, order.quantity + 1):
                done = order.status in written or rng.random() < 0.3
                tasks.append(
                    Task(
                        order=order,
                        kind=TaskKind.WRITE,
                        host=host,
                        copy_number=copy,
                        needed_bytes=usable_bytes(order.card_size_gb),
                        status=TaskStatus.SUCCEEDED if done else TaskStatus.PENDING,
                        finished_at=now - timedelta(minutes=rng.randint(1, 10**4))
                        if done
                        else None,
                    )
                )
    Task.objects.bulk_create(tasks, batch_size=500)
    # Every slot has a history of written cards, and holds a card in some state.
    states = [
        SlotState.EMPTY,
        SlotState.WRITING,
        SlotState.VERIFYING,
        SlotState.DONE,
        SlotState.FAILED,
        SlotState.CARD_PRESENT,
    ]
    for writer in writers:
        succeeded = list(
            Task.objects.filter(
                host=writer.host, kind=TaskKind.WRITE, status=TaskStatus.SUCCEEDED
            )
        )
        pending = list(
            Task.objects.filter(
                host=writer.host, kind=TaskKind.WRITE, status=TaskStatus.PENDING
            )[: len(states) * 2]
        )
        for index, slot in enumerate(writer.slots.order_by("name")):
            history = succeeded[index::slots]
            Task.objects.filter(pk__in=[t.pk for t in history]).update(slot=slot)
            state = states[index % len(states)]
            held = pending[index] if index < len(pending) else None
            if held is not None and state != SlotState.EMPTY:
                Task.objects.filter(pk=held.pk).update(
                    status=TaskStatus.RUNNING, slot=slot, percent=40
                )
            Slot.objects.filter(pk=slot.pk).update(
                state=state,
                percent=40,
                task=held if state != SlotState.EMPTY else None,
                message="Card too small." if state == SlotState.FAILED else "",
            )
    # Logged in with force_login: no password.
    manager = User.objects.create(username=f"manager-{tag}", role=Role.MANAGER)
    five = max(made, key=lambda order: order.quantity)
    return {"manager": manager, "client": clients[7], "order": five}


def pages(world: dict) -> dict:
    return {
        "bare page (baseline)": "/bench/bare-page/",
        "order list, page 1": "/ops/orders/",
        "order list, page 10": "/ops/orders/?page=10",
        "order list, status writing": "/ops/orders/?status=writing",
        "order list, search a client": f"/ops/orders/?q={world['client'].username}",
        "order detail": f"/ops/orders/{world['order'].pk}/",
        "board page": "/ops/board/",
        "board part (htmx poll)": "/ops/board/hosts/",
    }


def ask(client, url: str) -> tuple[float, int, int]:
    response = client.get(url)
    if response.status_code != 200:
        raise SystemExit(f"{url}: {response.status_code}")
    # Rows shown: the list's orders, the board's slots (the pages' test ids).
    html = response.content.decode()
    rows = html.count('data-testid="order-row"') + html.count('data-testid="slot"')
    return float(response["X-Bench-Ms"]), int(response["X-Bench-Queries"]), rows


def measure(orders: int, rounds: int, seed: int) -> list[tuple]:
    """Runs in a child process whose DATABASE_URL is the backend's."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    # No setup_test_environment(): its instrumented template rendering would
    # copy every context, which a served page never does.
    call_command("migrate", verbosity=0)
    client = Client()

    small = load(20, 1, 4, seed)
    client.force_login(small["manager"])
    few = {name: ask(client, url) for name, url in pages(small).items()}
    for name, url in pages(small).items():
        few[name] = ask(client, url)  # the second: warm

    grown = load(orders, 4, 8, seed)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    client.force_login(grown["manager"])
    results = []
    for name, url in pages(grown).items():
        for _ in range(10):
            ask(client, url)
        times, queries, rows = [], set(), 0
        for _ in range(rounds):
            ms, count, rows = ask(client, url)
            times.append(ms)
            queries.add(count)
        results.append((name, few[name][2], few[name][1], rows, queries, times))
    return results


def child(backend: str, orders: int, rounds: int, seed: int) -> None:
    for name, rows_few, q_few, rows, queries, times in measure(orders, rounds, seed):
        slow = p95(times)
        shown = "/".join(str(q) for q in sorted(queries))
        print(
            f"RESULT|{backend}|{name}|{rows_few} / {q_few}|{rows} / {shown}"
            f"|{statistics.median(times):.1f}|{slow:.1f}|{times[-1]:.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.orders, args.rounds, args.seed)
        return
    load_before = " ".join(f"{value:.1f}" for value in os.getloadavg())
    rows = []
    for backend in args.backends:
        rows += run_backend(
            __file__,
            backend,
            [
                "--orders",
                str(args.orders),
                "--rounds",
                str(args.rounds),
                "--seed",
                str(args.seed),
            ],
            PG_DATABASE,
            DJANGO_SETTINGS_MODULE="bench.ops_bench_settings",
            ALLOWED_HOSTS="testserver",
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\n{stamp}, {platform.machine()}, {os.cpu_count()} cores, "
        f"{args.orders} orders, {args.rounds} requests per page, "
        f"load average before: {load_before}\n"
    )
    print(
        "| backend | page | rows / queries (20 orders) | rows / queries "
        f"({args.orders} orders) | median ms | p95 ms | max ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for backend, name, few, many, median, high, longest in rows:
        print(
            f"| {backend} | {name} | {few} | {many} | {median} | {high} | {longest} |"
        )


if __name__ == "__main__":
    main()
