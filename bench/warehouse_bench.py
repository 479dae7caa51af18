"""Warehouse benchmark: a 2 GiB image up and down through the warehouse, beside
plain pyftpdlib (no auth, no hashing) and ``cp`` of the same file, in one run;
then the time for 300 concurrent logins.

    .venv/bin/python bench/warehouse_bench.py [--size-gib 2] [--runs 3]
        [--logins 300] [--work DIR] [--keep]

Everything is real: a Django API (``manage.py runserver``, SQLite) in a scratch
data folder, the warehouse as ``python -m ftp``, plain pyftpdlib as
``python -m pyftpdlib``. curl moves the bytes for both servers (uploads from the
page-cached source, downloads to /dev/null). Each measurement is taken ``--runs``
times, interleaved, after a ``sync``; the median and the best are printed.
Targets: download >= 80% of plain pyftpdlib, upload (hashing) >= 60%, 300 logins
in under 2 s.
"""

from __future__ import annotations

import argparse
import ftplib
import hashlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workers.common.api import ApiClient  # noqa: E402

PASSWORD = "bench-password-not-secret"  # noqa: S105 - scratch accounts
GIB = 1024**3
PYTHON = sys.executable

SETUP = """
import json
from apps.accounts.models import Role
from apps.accounts.testing import make_user
from apps.scheduler.models import WorkerKind
from apps.scheduler.services.workers import register_worker
from apps.scheduler.testing import order
password = {password!r}
for name, role in [
    ("client", Role.CLIENT), ("creator", Role.CREATOR), ("warehouse", Role.WAREHOUSE)
] + [
    (f"reader-{{i}}", Role.DOWNLOADER) for i in range({readers})
]:
    user = make_user(role, name)
    user.set_password(password)
    user.save()
    if name == "creator":
        worker = register_worker(account=user, kind=WorkerKind.CREATOR, host="bench")
    if name == "client":
        client = user
placed = order(client)
print(json.dumps({{"worker": str(worker.pk), "order": str(placed.pk)}}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {timeout} s")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(command: list[str], server: int | None = None) -> tuple[float, float]:
    """Wall seconds of ``command``, and CPU seconds the server spent meanwhile."""
    os.sync()  # no writeback of the previous step inside this one
    cpu = cpu_seconds(server)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, cpu_seconds(server) - cpu


def make_source(path: Path, size: int) -> str:
    """Random (incompressible) bytes; returns their sha256."""
    hasher = hashlib.sha256()
    chunk = os.urandom(16 << 20)
    with path.open("wb") as stream:
        left = size
        while left:
            piece = chunk[: min(left, len(chunk))]
            # Vary each chunk so no two blocks are equal.
            piece = left.to_bytes(8, "little") + piece[8:]
            stream.write(piece)
            hasher.update(piece)
            left -= len(piece)
    return hasher.hexdigest()


def concurrent_logins(port: int, credentials: list[tuple[str, str]], count: int):
    """Seconds until ``count`` clients that start together are all logged in."""
    barrier = threading.Barrier(count + 1)
    done = []
    errors = []

    def one(index: int) -> None:
        user, token = credentials[index % len(credentials)]
        client = ftplib.FTP()  # noqa: S321 - the protocol being measured
        barrier.wait()
        try:
            client.connect("127.0.0.1", port, timeout=30)
            client.login(user, token)
            done.append(time.perf_counter())
        except (ftplib.Error, OSError) as exc:
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"{len(errors)} logins failed, first: {errors[0]}")
    return max(done) - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--logins", type=int, default=300)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    for tool in ("curl", "cp"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install {tool}")

    work = Path(tempfile.mkdtemp(prefix="warehouse-bench-", dir=args.work))
    processes: list[subprocess.Popen] = []
    try:
        env = {
            **os.environ,
            "IMAGER_DATA_DIR": str(work / "data"),
            "DATABASE_URL": f"sqlite:///{work / 'data' / 'bench.sqlite3'}",
            "AUTH_THROTTLE_RATE": "100000/min",
            "LEASE_SECONDS": "86400",
            "WORKER_OFFLINE_AFTER": "86400",
            "DEBUG": "true",
            "LOG_LEVEL": "WARNING",
        }
        env.pop("REDIS_URL", None)
        manage = [PYTHON, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=ROOT)
        script = SETUP.format(password=PASSWORD, readers=20)
        ids = json.loads(
            subprocess.run(
                [*manage, "shell", "-c", script],
                env=env,
                check=True,
                cwd=ROOT,
                capture_output=True,
                text=True,
            ).stdout.splitlines()[-1]  # after anything the set-up printed
        )
        api_port = free_port()
        processes.append(
            subprocess.Popen(
                [*manage, "runserver", "--noreload", f"127.0.0.1:{api_port}"],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=(work / "api.log").open("w"),
            )
        )
        wait_port(api_port)
        api_url = f"http://127.0.0.1:{api_port}"

        warehouse = subprocess.Popen(
            [
                *(PYTHON, "-m", "ftp", "--api-url", api_url),
                *("--username", "warehouse", "--root", str(work / "warehouse")),
                *("--port", "0", "--reserve", "0"),
            ],
            env={**env, "WAREHOUSE_PASSWORD": PASSWORD},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=(work / "warehouse.log").open("w"),
            text=True,
        )
        processes.append(warehouse)
        line = warehouse.stdout.readline()
        if not line.startswith("warehouse listening"):
            raise SystemExit(f"the warehouse did not start; see {work}/warehouse.log")
        wh_port = int(line.split()[3].rsplit(":", 1)[1])

        plain_port = free_port()
        (work / "plain").mkdir()
        processes.append(
            subprocess.Popen(
                [
                    *(PYTHON, "-m", "pyftpdlib", "-i", "127.0.0.1"),
                    *("-p", str(plain_port), "-w", "-d", str(work / "plain")),
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_port(plain_port)

        size = int(args.size_gib * GIB)
        source = work / "source.img"
        sha256 = make_source(source, size)
        bmap = b"<?xml version='1.0'?><bmap/>\n"
        (work / "source.bmap").write_bytes(bmap)

        creator = ApiClient(api_url, "creator", PASSWORD)
        task = creator.post("api/v1/tasks/claim/", {"worker": ids["worker"]})["task"]
        if task is None:
            raise SystemExit("the creator could not claim the build task")
        name = f"{ids['order']}.img"
        creator.post(
            f"api/v1/tasks/{task['id']}/image/",
            {
                "lease_id": task["lease_id"],
                "file_name": name,
                "size": size,
                "sha256": sha256,
                "bmap_name": f"{ids['order']}.bmap",
                "bmap_size": len(bmap),
                "bmap_sha256": hashlib.sha256(bmap).hexdigest(),
            },
        )
        folder = f"orders/{ids['order']}"
        readers = [
            (f"reader-{i}", ApiClient(api_url, f"reader-{i}", PASSWORD).access_token)
            for i in range(20)
        ]
        reader, reader_token = readers[0]
        wh = f"ftp://127.0.0.1:{wh_port}"
        plain = f"ftp://127.0.0.1:{plain_port}"

        def upload_warehouse() -> tuple[float, float]:
            user = f"creator:{creator.access_token}"
            target = f"{wh}/{folder}/{name}"
            command = ["curl", "-sS", "--ftp-create-dirs", "--user", user]
            return timed([*command, "-T", str(source), target], warehouse.pid)

        def wait_verified() -> None:
            user = f"creator:{creator.access_token}"
            target = f"{wh}/{folder}/{ids['order']}.bmap"
            bmap_file = str(work / "source.bmap")
            subprocess.run(
                ["curl", "-sS", "--user", user, "-T", bmap_file, target], check=True
            )
            info = {}
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                info = creator.get(f"api/v1/tasks/{task['id']}/download-info/")
                if info["state"] == "verified":
                    return
                time.sleep(0.5)
            raise SystemExit(f"the image was not verified: {info}")

        plain_pid = processes[-1].pid
        reader_login = f"{reader}:{reader_token}"
        steps = {
            "cp": lambda: timed(["cp", str(source), str(work / "copy.img")]),
            "plain upload": lambda: timed(
                ["curl", "-sS", "-T", str(source), f"{plain}/up.img"], plain_pid
            ),
            "warehouse upload": upload_warehouse,
            "plain download": lambda: timed(
                ["curl", "-sS", "-o", "/dev/null", f"{plain}/up.img"], plain_pid
            ),
            "warehouse download": lambda: timed(
                [
                    *("curl", "-sS", "--user", reader_login),
                    *("-o", "/dev/null", f"{wh}/{folder}/{name}"),
                ],
                warehouse.pid,
            ),
        }
        results: dict[str, list[tuple[float, float]]] = {k: [] for k in steps}
        for run in range(args.runs):
            for label, step in steps.items():
                results[label].append(step())
                if label == "cp":
                    (work / "copy.img").unlink()
                if label == "warehouse upload" and run == 0:
                    wait_verified()
                if label == "warehouse upload":
                    time.sleep(1)  # the report's fsync follows the upload
        stored = work / "warehouse" / folder / name
        if stored.stat().st_size != size:
            raise SystemExit("the warehouse's copy has the wrong size")

        logins_first = concurrent_logins(wh_port, readers, args.logins)
        logins_again = concurrent_logins(wh_port, readers, args.logins)

        mib = size / 1024**2
        print(f"date          {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
        print(f"machine       {platform.machine()}, {os.cpu_count()} cores, "
              f"{platform.system()} {platform.release()}, "
              f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
        print(f"file          {size / GIB:.2f} GiB, {args.runs} runs")
        print(f"{'':19} {'median':>15} {'best':>15}   server CPU (median)")
        for label, runs in results.items():
            walls = [wall for wall, _cpu in runs]
            median, best = statistics.median(walls), min(walls)
            cpu = statistics.median(c for _w, c in runs)
            cpu_text = f"{cpu:6.2f} s" if label != "cp" else ""
            print(
                f"{label:19} {median:6.2f} s {mib / median:5.0f} MiB/s"
                f" {best:6.2f} s {mib / best:5.0f} MiB/s   {cpu_text}"
            )

        def ratio(kind: str, pick, index: int) -> float:
            plain_runs = [run[index] for run in results[f"plain {kind}"]]
            ours = [run[index] for run in results[f"warehouse {kind}"]]
            return pick(plain_runs) / pick(ours)

        for kind, target in (("download", 0.8), ("upload", 0.6)):
            print(
                f"{kind:9} {ratio(kind, statistics.median, 0):4.0%} of plain "
                f"pyftpdlib (median), {ratio(kind, min, 0):4.0%} (best), "
                f"{ratio(kind, statistics.median, 1):4.0%} (server CPU); "
                f"target >= {target:.0%}"
            )
        print(
            f"{args.logins} logins  {logins_first:.2f} s (first), "
            f"{logins_again:.2f} s (again); target < 2 s"
        )
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        if args.keep:
            print(f"kept          {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
