"""Scheduler API benchmark: simulated creator workers against gunicorn + PostgreSQL.

    .venv/bin/python bench/api_bench.py [--workers 50 200] [--duration 30]
        [--orders 10000] [--speedup 10] [--gunicorn gthread:3:4 ...] [--profile]
        [--fault none redis postgres] [--outage 10]

A template database with ``--orders`` pending orders (each with its create task)
is loaded once; every measured run starts from a fresh copy of it and a fresh
gunicorn. Each simulated worker logs in (a few accounts shared by all workers),
registers its own host, then loops: claim; ``--renewals`` times (wait, renew,
progress event); then either declare its image and report ``succeeded`` or, for
``--fail-share`` of the tasks, report ``failed`` (retryable, so the task is
re-queued), and claim again at once. The waits are the real workers' (a renewal
every 30 s, an idle claim every 5 s) divided by ``--speedup``. The bare endpoint
is then hit by as many clients, each sending the same requests at the same times
as a worker would. Latency is measured by the client, per request; X-Bench-Ms
(time in Django) and X-Bench-Queries come from the bench middleware
(bench/bench_urls.py).

``--fault`` runs the same load once per mode, side by side in one run, on a
PostgreSQL cluster and a redis-server of the bench's own (tests/faults/services.py;
the shared servers are never stopped): ``none``, ``redis`` (Redis stopped halfway
through the measured window, started again after ``--outage`` seconds) and
``postgres`` (PostgreSQL likewise). Its simulated workers retry as the real
workers' client does (connection errors and 502/503/504, backoff from 1 s doubling
up to 30 s); a request is *lost* when it never got an answer below 500 that way,
and its latency runs from its first attempt to its answer, retries included.

Only loopback is used. The load generator is this process (threads over the
standard library's http.client, no Django); it shares the machine's cores with
gunicorn and PostgreSQL, and the CPU each of them used is printed with the table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import pstats
import random
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faults.services import PostgresCluster, RedisServer  # noqa: E402
from workers.common.names import Event, WorkerKind  # noqa: E402

DATABASE = "imager_bench"
TEMPLATE = "imager_bench_template"
# Throw-away accounts of a database that lives for one run.
PASSWORD = "bench-creator-password"  # noqa: S105
ACCOUNTS = 8
API = "/api/v1"
# Rows of the table, in the order of a worker's cycle.
LABELS = [
    "claim",
    "renew",
    "events progress",
    "image",
    "events succeeded",
    "events failed",
]
# What the real workers' client retries (workers/common/api.py).
RETRY_STATUSES = {502, 503, 504}


# --- Loading the template database (runs in a child process with Django) ---------


def load_template(orders: int, accounts: int) -> None:
    """Accounts, an online warehouse and ``orders`` pending orders with their create
    task and the rows place_order would write, in bulk (place_order one by one
    would take minutes for 10,000)."""
    import django

    django.setup()
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.utils import timezone

    from apps.accounts.models import Role
    from apps.orders.models import Configuration, Order, OrderEvent, OrderStatus
    from apps.orders.pipeline import build_task
    from apps.scheduler.models import Task, TaskEvent, Warehouse
    from apps.scheduler.testing import ZIM

    User = get_user_model()
    # One hash for every account: hashing is deliberately slow (PBKDF2).
    password = make_password(PASSWORD)
    client = User.objects.create(
        username="bench-client", role=Role.CLIENT, email="client@example.org"
    )
    User.objects.bulk_create(
        User(username=f"bench-creator-{i}", role=Role.CREATOR, password=password)
        for i in range(accounts)
    )
    warehouse_account = User.objects.create(
        username="bench-warehouse", role=Role.WAREHOUSE
    )
    Warehouse.objects.create(
        name="bench",
        account=warehouse_account,
        ftp_url="ftp://127.0.0.1:2121",
        capacity_bytes=10**15,
        free_bytes=10**15,
    )
    config = Configuration(
        owner=client,
        name="School kit",
        ssid="Kiwix Hotspot",
        language="fr",
        timezone="Europe/Paris",
        admin_password="hotspot-admin-pw",  # noqa: S106 - test data
        contents=[dict(ZIM)],
    )
    config.full_clean()
    config.save()
    frozen = config.snapshot()
    # Distinct, increasing creation times, as orders placed one after another.
    start = timezone.now() - timedelta(seconds=orders)
    placed = Order.objects.bulk_create(
        (
            Order(
                owner=client,
                configuration=config,
                config=frozen,
                card_size_gb=8,
                content_bytes=config.total_size,
                recipient_name="Ada School",
                recipient_email="ada@example.org",
                shipping_address="1 rue de l'Ecole\n75001 Paris",
                created_at=start + timedelta(seconds=i),
            )
            for i in range(orders)
        ),
        batch_size=1000,
    )
    OrderEvent.objects.bulk_create(
        (
            OrderEvent(order=o, status=OrderStatus.PENDING, message="Order placed.")
            for o in placed
        ),
        batch_size=1000,
    )
    tasks = [build_task(o) for o in placed]
    for task in tasks:
        task.created_at = task.order.created_at
    tasks = Task.objects.bulk_create(tasks, batch_size=1000)
    TaskEvent.objects.bulk_create(
        (TaskEvent(task=t, type="created") for t in tasks), batch_size=1000
    )


# --- Environment, database, gunicorn ----------------------------------------------


def run(command: list[str], env: dict | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        command,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(command[:4])}... failed ({done.returncode}):\n"
            f"{done.stdout[-2000:]}{done.stderr[-4000:]}"
        )
    return done.stdout


def psql(server: str, sql: str, database: str = "postgres") -> str:
    return run(
        ["psql", f"{server}/{database}", "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
        timeout=120,
    )


def recreate(server: str, name: str, template: str | None = None) -> None:
    # FORCE ends connections left over from a killed run (ours: bench names only).
    psql(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    copy = f" TEMPLATE {template}" if template else ""
    psql(server, f"CREATE DATABASE {name}{copy}")


def service_env(args, data_dir: Path, key_file: Path, database: str) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="bench.bench_settings",
        PYTHONPATH=str(ROOT),
        DATABASE_URL=f"{args.postgres}/{database}",
        REDIS_URL=args.redis,
        CACHE_KEY_PREFIX="imager-bench",
        # Production mode: DEBUG keeps every SQL statement in memory and would
        # slow the server down.
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        JWT_PRIVATE_KEY_FILE=str(key_file),
        ALLOWED_HOSTS="127.0.0.1",
        AUTH_THROTTLE_RATE="100000/min",
        IMAGER_DATA_DIR=str(data_dir),
        # The loaded warehouse never sends heartbeats; it must stay online.
        WORKER_OFFLINE_AFTER="864000",
        LOG_LEVEL="WARNING",
        # The loaded configuration's content (apps.scheduler.testing.ZIM) is on
        # loopback, which the outbound rule refuses unless allowed.
        OUTBOUND_ALLOWED_NETWORKS="127.0.0.0/8",
    )
    env.pop("JWT_PRIVATE_KEY", None)
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Gunicorn:
    """gunicorn in its own process group, stopped (TERM, then KILL) on exit."""

    def __init__(self, spec: str, env: dict, log: Path):
        kind, workers, threads = parse_spec(spec)
        self.port = free_port()
        self.log = log
        binary = Path(sys.executable).with_name("gunicorn")
        self.command = [
            str(binary if binary.exists() else shutil.which("gunicorn")),
            "imager_site.wsgi:application",
            f"--bind=127.0.0.1:{self.port}",
            f"--worker-class={kind}",
            f"--workers={workers}",
            f"--threads={threads}",
            # Workers keep their connection between renewals.
            "--keep-alive=75",
            "--backlog=2048",
            "--timeout=60",
            "--graceful-timeout=10",
            "--log-level=warning",
            # The default control socket is one path per user: shared with
            # anyone else running gunicorn on this machine.
            "--no-control-socket",
            f"--chdir={ROOT}",
        ]
        self.env = env

    def __enter__(self) -> Gunicorn:
        self.stream = self.log.open("ab")
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=ROOT,
            stdout=self.stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn stopped:\n{self.log.read_text()[-3000:]}")
            try:
                status, _body, _h = Client(self.port).call("GET", "/bare/")
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise SystemExit(f"gunicorn did not answer in 60 s; see {self.log}")

    def __exit__(self, *_exc) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.stream.close()


def parse_spec(spec: str) -> tuple[str, int, int]:
    """``gthread:2:16`` → (worker class, processes, threads per process)."""
    kind, workers, threads = [*spec.split(":"), "1", "1"][:3]
    if kind == "sync" and threads != "1":
        raise SystemExit("sync workers have one thread each; write sync:N:1")
    return kind, int(workers), int(threads)


# --- Load generator (no Django) ---------------------------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection, as one worker process holds."""

    def __init__(self, port: int, token: str | None = None):
        self.port = port
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.connection: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body) if body is not None else None
        for attempt in (1, 2):
            fresh = self.connection is None
            if fresh:
                self.connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=30
                )
            try:
                self.connection.request(method, path, data, self.headers)
                response = self.connection.getresponse()
                raw = response.read()
            except (ConnectionError, http.client.HTTPException):
                self.connection.close()
                self.connection = None
                # Only a reused connection may have been closed by the server
                # before it read the request; anything else is a real error.
                if fresh or attempt == 2:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                self.connection.close()
                self.connection = None
            return response.status, raw, response.headers
        raise AssertionError("unreachable")


class Recorder:
    """Latency of every request started inside the measured window, per label."""

    def __init__(self):
        self.rows: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.examples: dict[str, str] = {}
        self.start = self.end = float("inf")
        # One entry per claim answered with no task (append is thread-safe).
        self.claims_empty: list[int] = []
        self.lock = threading.Lock()  # errors only: += is not atomic
        # --fault runs: retry as the real workers do; retried attempts counted.
        self.retry = False
        self.retried: list[int] = []
        self.lost: list[int] = []  # no answer, or >= 500 after any retries

    def error(self, label: str, example: str) -> None:
        with self.lock:
            self.errors[label] += 1
            self.examples.setdefault(label, example)

    def measuring(self, started: float) -> bool:
        return self.start <= started < self.end

    def call(self, client: Client, label: str, method: str, path: str, body=None):
        started = time.perf_counter()
        delay = 1.0
        while True:
            try:
                status, raw, headers = client.call(method, path, body)
                failure = f"{status} {raw[:300]!r}" if status in RETRY_STATUSES else ""
            except (OSError, http.client.HTTPException) as exc:
                status, failure = 0, repr(exc)
            # Until well after the window: a request the fault held up counts.
            if not (failure and self.retry and time.perf_counter() < self.end + 60):
                break
            if self.measuring(started):
                self.retried.append(1)
            time.sleep(delay)
            delay = min(delay * 2, 30)
        if status == 0:
            if self.measuring(started):
                self.error(label, failure)
                self.lost.append(1)
            return None
        elapsed = (time.perf_counter() - started) * 1000
        if self.measuring(started):
            # list.append is atomic under the GIL: no lock on the hot path.
            self.rows[label].append(
                (
                    elapsed,
                    float(headers.get("X-Bench-Ms", "nan")),
                    int(headers.get("X-Bench-Queries", "-1")),
                )
            )
            if status >= 400:
                self.error(label, f"{status} {raw[:300]!r}")
            if status >= 500:
                self.lost.append(1)
        if status >= 400:
            return None
        return json.loads(raw) if raw else {}


class CpuMeter:
    """CPU used in the measured window by gunicorn's processes, the PostgreSQL
    backends of the bench database, this load generator and the whole machine,
    read from /proc. Other people's jobs share the cores: this says how much of
    the machine the service really had."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, gunicorn_group: int):
        self.group = gunicorn_group
        self.kinds: dict[int, str | None] = {}
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}

    def kind(self, pid: int, group: int) -> str | None:
        if group == self.group:
            self.kinds[pid] = "gunicorn"
        elif pid not in self.kinds:
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                title = b""
            # A backend's title: "postgres: 15/main: USER DATABASE HOST(PORT) ..."
            ours = title.startswith(b"postgres:") and f" {DATABASE} ".encode() in title
            self.kinds[pid] = "postgres" if ours else None
        return self.kinds[pid]

    def sample(self, baseline: bool = False) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue  # ended between the listing and the read
            fields = stat[stat.rindex(")") + 2 :].split()
            pid = int(entry.name)
            if self.kind(pid, int(fields[2])) is None:
                continue
            ticks = int(fields[11]) + int(fields[12])
            if baseline:
                self.first[pid] = ticks
            # A process that ends between samples loses its last half second.
            self.last[pid] = ticks

    @staticmethod
    def machine() -> tuple[int, int]:
        """(busy, total) ticks of all cores since boot."""
        values = [int(v) for v in Path("/proc/stat").read_text().split()[1:9]]
        return values[0] + values[1] + values[2] + values[5] + values[6] + values[7], (
            sum(values)
        )

    def run(self, start: float, end: float) -> None:
        time.sleep(max(0.0, start - time.perf_counter()))
        self.machine_start = self.machine()
        self.self_start = resource.getrusage(resource.RUSAGE_SELF)
        self.sample(baseline=True)
        while time.perf_counter() < end:
            time.sleep(0.5)
            self.sample()
        self.machine_end = self.machine()
        self.self_end = resource.getrusage(resource.RUSAGE_SELF)

    def cores(self, duration: float) -> dict[str, float]:
        used: dict[str, float] = defaultdict(float)
        for pid, ticks in self.last.items():
            used[self.kinds[pid]] += ticks - self.first.get(pid, 0)
        result = {kind: ticks / self.TICK / duration for kind, ticks in used.items()}
        result["client"] = (
            self.self_end.ru_utime
            + self.self_end.ru_stime
            - self.self_start.ru_utime
            - self.self_start.ru_stime
        ) / duration
        busy = self.machine_end[0] - self.machine_start[0]
        total = self.machine_end[1] - self.machine_start[1]
        result["machine"] = busy / max(total, 1) * (os.cpu_count() or 1)
        result["others"] = result["machine"] - sum(
            result.get(k, 0.0) for k in ("gunicorn", "postgres", "client")
        )
        return result


# The real workers' cadence (workers/common/lease.py and worker.py): a renewal
# every 30 s while a task runs, a claim every 5 s while idle. --speedup divides
# both, so N simulated workers stand for N x speedup real ones.
RENEW_SECONDS = 30
POLL_SECONDS = 5


def wait(rng: random.Random, seconds: float, speedup: float) -> None:
    # +-50% so that hundreds of workers started together drift apart.
    if seconds / speedup > 0:
        time.sleep(seconds / speedup * rng.uniform(0.5, 1.5))


def start(rng: random.Random, speedup: float) -> None:
    """Workers start spread over one renewal interval, as a fleet that has been
    running for a while, not all at the same instant."""
    time.sleep(rng.uniform(0, RENEW_SECONDS / speedup))


def creator(port, token, host, recorder, stop_at, args, seed) -> None:
    """One simulated creator worker (see the module's docstring for its cycle)."""
    rng = random.Random(seed)  # noqa: S311 - load pacing, not secrets
    client = Client(port, token)
    worker = recorder.call(
        client,
        "register",
        "POST",
        f"{API}/workers/register/",
        {"kind": WorkerKind.CREATOR, "host": host, "version": "bench"},
    )
    if worker is None:
        return
    start(rng, args.speedup)
    while time.perf_counter() < stop_at:
        answer = recorder.call(
            client,
            "claim",
            "POST",
            f"{API}/tasks/claim/",
            {"worker": worker["id"], "free_disk": 10**12},
        )
        if not answer or not answer.get("task"):
            if answer is not None and recorder.measuring(time.perf_counter()):
                recorder.claims_empty.append(1)
            wait(rng, POLL_SECONDS, args.speedup)
            continue
        task = answer["task"]
        base = f"{API}/tasks/{task['id']}"
        lease = task["lease_id"]
        held = True
        for step in range(args.renewals):
            if time.perf_counter() >= stop_at:
                return
            percent = 100 * (step + 1) / (args.renewals + 1)
            wait(rng, RENEW_SECONDS, args.speedup)
            held = recorder.call(
                client,
                "renew",
                "POST",
                f"{base}/renew/",
                {"lease_id": lease, "phase": "building", "percent": percent},
            )
            if held is None:
                break
            held = recorder.call(
                client,
                "events progress",
                "POST",
                f"{base}/events/",
                {
                    "lease_id": lease,
                    "event_id": str(uuid.uuid4()),
                    "type": "progress",
                    "phase": "building",
                    "percent": percent,
                },
            )
            if held is None:
                break
        if held is None or time.perf_counter() >= stop_at:
            continue
        if rng.random() < args.fail_share:
            recorder.call(
                client,
                "events failed",
                "POST",
                f"{base}/events/",
                {
                    "lease_id": lease,
                    "event_id": str(uuid.uuid4()),
                    "type": Event.FAILED,
                    "error": "bench: simulated build failure",
                    "retryable": True,
                },
            )
            continue
        name = task["id"]
        declared = recorder.call(
            client,
            "image",
            "POST",
            f"{base}/image/",
            {
                "lease_id": lease,
                "file_name": f"{name}.img",
                "size": 7 * 10**9,
                "sha256": rng.randbytes(32).hex(),
                "bmap_name": f"{name}.bmap",
                "bmap_size": 30_000,
                "bmap_sha256": rng.randbytes(32).hex(),
            },
        )
        if declared is None:
            continue
        recorder.call(
            client,
            "events succeeded",
            "POST",
            f"{base}/events/",
            {
                "lease_id": lease,
                "event_id": str(uuid.uuid4()),
                "type": Event.SUCCEEDED,
                "result": {"bench": True},
            },
        )


def bare_client(port, recorder, stop_at, args, seed) -> None:
    """A worker's cycle with every request sent to the bare endpoint instead."""
    rng = random.Random(seed)  # noqa: S311 - load pacing, not secrets
    client = Client(port)
    start(rng, args.speedup)
    while time.perf_counter() < stop_at:
        recorder.call(client, "bare", "GET", "/bare/")  # claim
        for _step in range(args.renewals):
            wait(rng, RENEW_SECONDS, args.speedup)
            recorder.call(client, "bare", "GET", "/bare/")  # renew
            recorder.call(client, "bare", "GET", "/bare/")  # progress event
        recorder.call(client, "bare", "GET", "/bare/")  # image
        recorder.call(client, "bare", "GET", "/bare/")  # succeeded


def run_threads(
    target, count: int, args, recorder: Recorder, extra, group: int, fault=None
):
    """Start ``count`` clients, measure ``args.duration`` seconds after a warm-up;
    ``fault(seconds)`` (a server's outage) runs halfway through the window."""
    now = time.perf_counter()
    recorder.start = now + args.warmup
    recorder.end = recorder.start + args.duration
    injector = None
    if fault is not None:
        halfway = recorder.start + args.duration / 2

        def inject():
            time.sleep(max(0.0, halfway - time.perf_counter()))
            fault(args.outage)

        injector = threading.Thread(target=inject, daemon=True)
        injector.start()
    recorder.cpu = CpuMeter(group)
    meter = threading.Thread(
        target=recorder.cpu.run, args=(recorder.start, recorder.end), daemon=True
    )
    meter.start()
    threads = [
        threading.Thread(
            target=target,
            args=(*extra(i), recorder, recorder.end, args, i),
            daemon=True,
        )
        for i in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        # A request in flight at the end has 30 s (the socket timeout) to finish,
        # or, retrying through a fault, the minute after the window.
        thread.join(timeout=max(0, recorder.end - time.perf_counter()) + 95)
    meter.join()
    if injector is not None:
        injector.join()


def tokens(port: int) -> list[str]:
    found = []
    for i in range(ACCOUNTS):
        status, raw, _h = Client(port).call(
            "POST",
            f"{API}/auth/token/",
            {"username": f"bench-creator-{i}", "password": PASSWORD},
        )
        if status != 200:
            raise SystemExit(f"cannot log in bench-creator-{i}: {status} {raw[:300]!r}")
        found.append(json.loads(raw)["access"])
    return found


# --- Report -----------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


HEADER = (
    f"{'endpoint':<18}{'requests':>9}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
    f"{'errors':>8}{'srv p50':>9}{'srv p99':>9}{'queries':>9}"
)


def table_row(label: str, samples, errors: int, duration: float) -> str:
    latency = [s[0] for s in samples]
    server = [s[1] for s in samples]
    queries = [s[2] for s in samples]
    return (
        f"{label:<18}{len(samples):>9}{len(samples) / duration:>8.0f}"
        f"{percentile(latency, 0.5):>9.1f}{percentile(latency, 0.99):>9.1f}"
        f"{errors:>8}{percentile(server, 0.5):>9.1f}{percentile(server, 0.99):>9.1f}"
        f"{percentile(queries, 0.5):>9.0f}"
    )


def report(api: Recorder, bare: Recorder, duration: float) -> list[str]:
    lines = [HEADER]
    every = []
    for label in LABELS:
        if api.rows.get(label) or api.errors.get(label):
            lines.append(table_row(label, api.rows[label], api.errors[label], duration))
            every.extend(api.rows[label])
    errors = sum(api.errors[label] for label in LABELS)
    lines.append(table_row("API, all", every, errors, duration))
    lines.append(table_row("bare", bare.rows["bare"], bare.errors["bare"], duration))
    for recorder in (api, bare):
        for label, example in recorder.examples.items():
            lines.append(f"  first error of {label}: {example}")
    lines.append(f"  claims answered with no task: {len(api.claims_empty)}")
    for name, recorder, samples in (
        ("API", api, every),
        ("bare", bare, bare.rows["bare"]),
    ):
        cores = recorder.cpu.cores(duration)
        per = 1000 * duration / max(len(samples), 1)
        lines.append(
            f"  CPU during {name} (cores of {os.cpu_count()}; ms per request): "
            f"gunicorn {cores.get('gunicorn', 0):.2f} "
            f"({cores.get('gunicorn', 0) * per:.1f}), PostgreSQL backends "
            f"{cores.get('postgres', 0):.2f} ({cores.get('postgres', 0) * per:.1f}), "
            f"load generator {cores['client']:.2f}, others' jobs "
            f"{cores['others']:.2f}, whole machine {cores['machine']:.2f}"
        )
    return lines


def print_profiles(folder: Path, top: int) -> None:
    """The functions where each endpoint spends its time, summed over processes."""
    by_label: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.glob("*.prof")):
        by_label[path.name.rsplit("-", 1)[0]].append(path)
    for label, paths in sorted(by_label.items()):
        print(f"\n--- profile of {label} ({len(paths)} processes, thread CPU time)")
        stats = pstats.Stats(*map(str, paths), stream=sys.stdout)
        stats.strip_dirs().sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(top // 2)


# --- Main -------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--duration", type=float, default=30, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=5, help="seconds not measured")
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument(
        "--speedup",
        type=float,
        default=10,
        help="how many times faster than real workers the simulated ones renew "
        "and poll (inf: no pauses at all, the server's capacity)",
    )
    parser.add_argument("--renewals", type=int, default=3, help="renewals per task")
    parser.add_argument(
        "--fail-share", type=float, default=0.1, help="share of tasks that fail"
    )
    parser.add_argument(
        "--gunicorn",
        nargs="+",
        default=["gthread:3:4"],
        # 3 processes x 4 threads measured best on 2 cores (bench/README.md): a
        # process per core plus one, few threads so they seldom queue for the GIL.
        help="worker class:processes:threads, several to compare",
    )
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument(
        "--redis",
        default="redis://127.0.0.1:6379/13",
        help="a Redis database of the bench's own: it is emptied at the end",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile one request in 10 in the server and print where time goes "
        "(slows the server: numbers of such a run are not the benchmark's)",
    )
    parser.add_argument(
        "--synchronous-commit",
        choices=["on", "off"],
        default="on",
        help="off: commits do not wait for the disk (bench database only), to "
        "tell the time of fsyncs from the rest",
    )
    parser.add_argument(
        "--fault",
        nargs="+",
        choices=FAULTS,
        help="run the load once per mode on servers of the bench's own: none, "
        "redis or postgres (stopped halfway, started after --outage seconds)",
    )
    parser.add_argument(
        "--outage", type=float, default=10, help="seconds a --fault server is down"
    )
    parser.add_argument("--keep", action="store_true", help="keep databases and files")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load_template(args.orders, ACCOUNTS)
        return

    servers = own_servers(args) if args.fault else None
    work = Path(tempfile.mkdtemp(prefix="api-bench-"))
    key_file = work / "jwt_private.pem"
    run(["openssl", "genpkey", "-algorithm", "RSA", "-out", str(key_file)])
    python = sys.executable
    began = time.monotonic()
    try:
        env = service_env(args, work, key_file, TEMPLATE)
        recreate(args.postgres, TEMPLATE)
        run([python, "manage.py", "migrate", "--noinput", "-v", "0"], env)
        # With DEBUG off the site refuses to start without collected static files.
        run([python, "manage.py", "collectstatic", "--no-input", "-v", "0"], env)
        run([python, __file__, "--load", "--orders", str(args.orders)], env)
        psql(args.postgres, "VACUUM ANALYZE", TEMPLATE)
        print(
            f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
            f"{os.cpu_count()} cores, Linux {platform.release()}, Python "
            f"{platform.python_version()}, PostgreSQL "
            f"{psql(args.postgres, 'SHOW server_version').strip()}; "
            f"{args.orders} orders loaded in {time.monotonic() - began:.0f} s"
        )
        print(
            f"# cycle per worker: claim, {args.renewals} x (renew, progress event), "
            f"image + succeeded ({1 - args.fail_share:.0%}) or failed; renewal "
            f"every {RENEW_SECONDS / args.speedup:.2g} s, idle claims every "
            f"{POLL_SECONDS / args.speedup:.2g} s (+-50%); {args.duration:.0f} s "
            f"measured after {args.warmup:.0f} s of warm-up"
        )
        for spec in args.gunicorn:
            for count in args.workers:
                if servers:
                    measure_faults(args, spec, count, work, key_file, servers)
                else:
                    measure(args, spec, count, work, key_file)
    finally:
        if not args.keep:
            for name in (DATABASE, TEMPLATE):
                psql(args.postgres, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            shutil.rmtree(work, ignore_errors=True)
            if shutil.which("redis-cli"):
                run(["redis-cli", "-u", args.redis, "FLUSHDB"])
        else:
            print(f"# kept {work} and databases {DATABASE}, {TEMPLATE}")
        if servers:
            for server in servers.values():
                server.close()


def measure(args, spec: str, count: int, work: Path, key_file: Path) -> None:
    recreate(args.postgres, DATABASE, TEMPLATE)
    if args.synchronous_commit == "off":
        # This database only: the server's other databases keep their setting.
        psql(args.postgres, f"ALTER DATABASE {DATABASE} SET synchronous_commit = off")
    env = service_env(args, work, key_file, DATABASE)
    profiles = work / f"profile-{spec.replace(':', '-')}-{count}"
    if args.profile:
        profiles.mkdir()
        env["BENCH_PROFILE_DIR"] = str(profiles)
    with Gunicorn(spec, env, work / "gunicorn.log") as server:
        access = tokens(server.port)
        api = Recorder()
        run_threads(
            creator,
            count,
            args,
            api,
            lambda i: (server.port, access[i % ACCOUNTS], f"bench-{i:04d}"),
            server.process.pid,
        )
        bare = Recorder()
        run_threads(
            bare_client, count, args, bare, lambda i: (server.port,), server.process.pid
        )
    # Others' jobs on the same machine change everything: say how busy it was.
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n## {count} simulated workers, gunicorn {spec}, synchronous_commit "
        f"{args.synchronous_commit}; load average {load}"
    )
    print("\n".join(report(api, bare, args.duration)))
    if args.profile:
        print_profiles(profiles, 25)


# --- Faults -----------------------------------------------------------------------

FAULTS = ["none", "redis", "postgres"]


def own_servers(args) -> dict:
    """A PostgreSQL cluster and a redis-server of the bench's own, which it may
    stop: the shared ones serve other people's tests."""
    postgres, redis = PostgresCluster(), RedisServer()
    postgres.init()
    postgres.start()
    redis.start()
    args.postgres = postgres.url("").rstrip("/")
    args.redis = redis.url(13)
    return {"postgres": postgres, "redis": redis}


def measure_faults(args, spec, count, work, key_file, servers) -> None:
    """The same load once per --fault mode, then one table of them side by side."""
    rows = []
    for mode in args.fault:
        recreate(args.postgres, DATABASE, TEMPLATE)
        env = service_env(args, work, key_file, DATABASE)
        fault = None
        if mode != "none":
            server = servers[mode]

            def fault(seconds, server=server):
                server.stop()
                time.sleep(seconds)
                server.start()

        with Gunicorn(spec, env, work / "gunicorn.log") as gunicorn:
            access = tokens(gunicorn.port)
            api = Recorder()
            api.retry = True
            run_threads(
                creator,
                count,
                args,
                api,
                lambda i, port=gunicorn.port, access=access: (
                    port,
                    access[i % ACCOUNTS],
                    f"bench-{i:04d}",
                ),
                gunicorn.process.pid,
                fault,
            )
        rows.append((mode, api))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n## {count} simulated workers, gunicorn {spec}, faults halfway through "
        f"{args.duration:.0f} s, {args.outage:.0f} s down; load average {load}"
    )
    print(
        f"{'fault':<10}{'requests':>9}{'lost':>6}{'retried':>8}{'errors':>7}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    )
    for mode, api in rows:
        latency = [s[0] for label in LABELS for s in api.rows[label]]
        errors = sum(api.errors.values())
        print(
            f"{mode:<10}{len(latency):>9}{len(api.lost):>6}{len(api.retried):>8}"
            f"{errors:>7}{percentile(latency, 0.5):>9.1f}"
            f"{percentile(latency, 0.99):>9.1f}{max(latency, default=0):>9.1f}"
        )
        for label, example in api.examples.items():
            print(f"  {mode}: first error of {label}: {example}")


if __name__ == "__main__":
    main()
