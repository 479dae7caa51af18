"""The same content ordered on 8, 32 and 128 GB cards (issue 12), side by side:
build, hash, upload and download time, and image bytes against content + base +
offspot-config's margin. Run as ``bench/creator_bench.py cards`` (or directly).

    .venv/bin/python bench/creator_bench.py cards [--content-gib 1] [--files 8]
        [--cards 8 32 128] [--rounds 2] [--work DIR] [--keep]

Everything the orders go through is real. A Django API (``manage.py
runserver``, SQLite, in a scratch data folder) places one order per card size
and round for one configuration, so the server itself renders and freezes each
order's recipe (``apps.orders.pipeline.place_order``: offspot-config's
``ConfigBuilder``, ``output.size: auto``) and checks it fits the card; the
bench reads it back as the creator does (``tasks/{id}/recipe/``). The content
is random files served over HTTP on loopback, like the demo's catalog; the
base image is the demo's 116 MiB stand-in, and the hotspot's OCI images are
the demo's small stand-ins in a local registry (``docker-registry``, pushed
with skopeo), pulled through the creator's mirror option. Per order, each
phase after a ``sync`` (no writeback of the previous phase inside the next):

- build: ``workers.creator.build.build`` (image and block map), from a warm
  content cache (a first build, not measured, downloads the content);
- hash: ``sha256_file`` of the image and the block map, as the creator does;
- upload: ``workers.common.ftp.upload`` of block map and image to the
  warehouse (``python -m ftp``: token login, sha256 while receiving, reports
  to the API); "verified" is the wait after it until the API says so;
- download: ``workers.common.ftp.download`` of both as a downloader account,
  then their size and sha256 checked, as ``workers.downloader`` does.

Sizes are run in the order given in even rounds and reversed in odd ones, so
a machine getting busier does not always land on the same size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from offspot_config.inputs.mainconfig import MainConfig  # noqa: E402
from offspot_config.utils.sizes import get_margin_for, get_raw_content_size  # noqa: E402

from demo.catalog import ContentServer, catalog_entries  # noqa: E402
from demo.chain import LOOPBACK, free_port, wait_for  # noqa: E402
from demo.inputs import BASE_SIZE, make_base_image  # noqa: E402
from demo.registry import LocalRegistry, make_oci_layout  # noqa: E402
from outbound.guard import Allowed  # noqa: E402
from workers.common.api import ApiClient  # noqa: E402
from workers.common.ftp import download, upload  # noqa: E402
from workers.common.hashing import sha256_file  # noqa: E402
from workers.creator.build import build  # noqa: E402
from workers.creator.cache import ContentCache  # noqa: E402
from workers.creator.oci import parse_mirrors  # noqa: E402
from workers.creator.partitions import ALIGNMENT  # noqa: E402
from workers.creator.recipe import parse_recipe  # noqa: E402

PASSWORD = "bench-password-not-secret"  # noqa: S105 - scratch accounts
PYTHON = sys.executable
MIB = 1024**2
GIB = 1024**3
PHASES = ("build", "hash", "upload", "verified", "download")

# Run by ``manage.py shell``: accounts, one configuration with the content, and
# one order per (round, card size), placed by the pipeline as the API does.
SETUP = """
import json
from apps.accounts.models import Role
from apps.accounts.testing import make_user
from apps.scheduler.models import WorkerKind
from apps.scheduler.services.workers import register_worker
from apps.scheduler.testing import configuration, order
password = {password!r}
users = {{}}
for name, role in [("client", Role.CLIENT), ("creator", Role.CREATOR),
                   ("warehouse", Role.WAREHOUSE), ("reader", Role.DOWNLOADER)]:
    users[name] = make_user(role, name)
    users[name].set_password(password)
    users[name].save()
worker = register_worker(account=users["creator"], kind=WorkerKind.CREATOR,
                         host="bench")
config = configuration(users["client"], name="bench", contents={contents!r})
orders = {{}}
for round_ in range({rounds}):
    for size in {cards!r}:
        placed = order(users["client"], config, card_size_gb=size)
        orders[str(placed.pk)] = [size, round_, placed.image_bytes]
print(json.dumps({{"worker": str(worker.pk), "orders": orders}}))
"""


def make_content(folder: Path, total: int, count: int) -> list[Path]:
    """``count`` files of random (incompressible, non-zero) bytes, ``total`` in
    all; the same bytes at each run (a fixed seed), so runs compare."""
    folder.mkdir(parents=True)
    rng = random.Random(42)  # noqa: S311 - test data, not secrets
    files = []
    for index in range(count):
        path = folder / f"content{index:02d}.zim"
        with path.open("wb") as stream:
            left = total // count
            while left:
                step = min(left, 16 * MIB)
                stream.write(rng.randbytes(step))
                left -= step
        files.append(path)
    return files


def cpu_seconds(pids: list[int]) -> float:
    """CPU time so far of this process (all threads), its finished tools
    (mke2fs, sfdisk, skopeo…) and the processes ``pids`` (API, warehouse)."""
    used = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        used += usage.ru_utime + usage.ru_stime
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        used += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def budget_of(recipe_text: str) -> dict[str, int]:
    """What offspot-config counts for this recipe: the base's root size, the
    raw content (files, and OCI images as declared) and its margin."""
    config = MainConfig.read_from(recipe_text)
    content = get_raw_content_size(config)
    return {
        "base": config.rootfs_size,
        "content": content,
        "margin": get_margin_for(content),
    }


class Bench:
    def __init__(self, args, work: Path):
        self.args, self.work = args, work
        self.processes: list[subprocess.Popen] = []
        self.registry: LocalRegistry | None = None
        self.content_server: ContentServer | None = None

    def start(self) -> None:
        work = self.work
        self.base = make_base_image(work / "base.img")
        total = int(self.args.content_gib * GIB)
        self.content = make_content(work / "content", total, self.args.files)
        self.content_server = ContentServer(work / "content")
        self.registry = LocalRegistry(work / "registry")
        self.registry.start()
        self.layout = make_oci_layout(work / "oci-layout")
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
            "IMAGER_DATA_DIR": str(work / "data"),
            "DATABASE_URL": f"sqlite:///{work / 'data' / 'bench.sqlite3'}",
            # As the demo: the small base image, and content on loopback.
            "HOTSPOT_BASE_SOURCE": self.base.resolve().as_uri(),
            "HOTSPOT_BASE_ROOTFS_SIZE": str(BASE_SIZE),
            "OUTBOUND_ALLOWED_NETWORKS": LOOPBACK,
            # Tasks are claimed up front and held for the whole run.
            "LEASE_SECONDS": "86400",
            "WORKER_OFFLINE_AFTER": "86400",
            "DEBUG": "true",
            "LOG_LEVEL": "WARNING",
        }
        self.env.pop("REDIS_URL", None)
        manage = [PYTHON, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "-v0"], env=self.env, check=True, cwd=ROOT)
        script = SETUP.format(
            password=PASSWORD,
            contents=catalog_entries(self.content, self.content_server.url),
            rounds=self.args.rounds,
            cards=self.args.cards,
        )
        done = subprocess.run(
            [*manage, "shell", "-c", script],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"placing the orders failed:\n{done.stderr[-3000:]}")
        self.ids = json.loads(done.stdout.splitlines()[-1])
        self.api_port = api_port = free_port()
        self.spawn("api", [*manage, "runserver", "--noreload", f"127.0.0.1:{api_port}"])
        self.api_url = f"http://127.0.0.1:{api_port}"
        wait_for(self.api_ready, "the API", timeout=60)
        warehouse = self.spawn(
            "warehouse",
            [
                *(PYTHON, "-m", "ftp", "--api-url", self.api_url),
                *("--username", "warehouse", "--root", str(work / "warehouse")),
                *("--port", "0", "--reserve", "0"),
            ],
            env={"WAREHOUSE_PASSWORD": PASSWORD},
            stdout=subprocess.PIPE,
        )
        line = warehouse.stdout.readline()
        if not line.startswith("warehouse listening"):
            raise SystemExit(f"the warehouse did not start; see {work}/warehouse.log")
        self.ftp_url = f"ftp://{line.split()[3]}"
        self.creator = ApiClient(self.api_url, "creator", PASSWORD)
        self.reader = ApiClient(self.api_url, "reader", PASSWORD)

    def spawn(self, name, command, env=None, stdout=subprocess.DEVNULL):
        process = subprocess.Popen(
            command,
            env={**self.env, **(env or {})},
            cwd=ROOT,
            stdout=stdout,
            stderr=(self.work / f"{name}.log").open("w"),
            text=True,
        )
        self.processes.append(process)
        return process

    def api_ready(self) -> bool:
        # A socket, not a login: the API client would log each refusal.
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.api_port)) == 0

    def claim_all(self) -> dict[str, dict]:
        """Every create task, by order, each with its frozen recipe."""
        tasks = {}
        while len(tasks) < len(self.ids["orders"]):
            body = {
                "worker": self.ids["worker"],
                "free_disk": shutil.disk_usage(self.work).free,
            }
            task = self.creator.post("api/v1/tasks/claim/", body)["task"]
            if task is None:
                raise SystemExit("the creator could not claim every build task")
            answer = self.creator.get(f"api/v1/tasks/{task['id']}/recipe/")
            task["recipe_text"] = answer["recipe"]
            tasks[task["order"]] = task
        return tasks

    def phase(self, name: str, action, times: dict):
        """Run ``action`` as phase ``name``: its wall and CPU seconds into
        ``times``. CPU time depends less on the other jobs of a shared machine
        than wall time does: it is the work itself."""
        os.sync()  # the previous phase's writeback is not this phase's time
        pids = [process.pid for process in self.processes]
        cpu = cpu_seconds(pids)
        start = time.perf_counter()
        result = action()
        times["seconds"][name] = time.perf_counter() - start
        times["cpu"][name] = cpu_seconds(pids) - cpu
        return result

    def run_order(self, task: dict, cache: ContentCache) -> dict:
        """Build, hash, upload and download one order's image; phase times and
        the image's sizes."""
        folder = self.work / "orders" / task["order"]
        image, bmap_path = folder / "image.img", folder / "image.bmap"
        recipe = parse_recipe(task["recipe_text"])
        times: dict[str, dict[str, float]] = {"seconds": {}, "cpu": {}}
        self.phase(
            "build",
            lambda: build(
                recipe,
                image,
                cache=cache,
                work_dir=folder / "build",
                bmap_path=bmap_path,
                mirrors=self.mirrors,
            ),
            times,
        )
        sha256, bmap_sha256 = self.phase(
            "hash", lambda: (sha256_file(image), sha256_file(bmap_path)), times
        )
        size, blocks = image.stat().st_size, allocated(image)
        self.creator.post(
            f"api/v1/tasks/{task['id']}/image/",
            {
                "lease_id": task["lease_id"],
                "file_name": image.name,
                "size": size,
                "sha256": sha256,
                "bmap_name": bmap_path.name,
                "bmap_size": bmap_path.stat().st_size,
                "bmap_sha256": bmap_sha256,
            },
        )
        upload_folder = task["work"]["upload_folder"]

        def send() -> None:
            for path in (bmap_path, image):
                upload(
                    self.ftp_url,
                    "creator",
                    lambda: self.creator.access_token,
                    path,
                    f"{upload_folder}/{path.name}",
                )

        self.phase("upload", send, times)
        info_url = f"api/v1/tasks/{task['id']}/download-info/"
        self.phase(
            "verified",
            lambda: wait_for(
                lambda: self.creator.get(info_url)["state"] == "verified",
                "the warehouse to verify the image",
                timeout=600,
                interval=0.1,
            ),
            times,
        )
        info = self.creator.get(info_url)
        shutil.rmtree(folder)  # the creator removes its build too
        local = self.work / "host" / task["order"]
        local.mkdir(parents=True)

        def fetch() -> None:
            files = [
                (info["bmap_path"], info["bmap_name"], info["bmap_sha256"]),
                (info["path"], info["file_name"], info["sha256"]),
            ]
            for remote, name, _digest in files:
                download(
                    info["ftp_url"],
                    "reader",
                    lambda: self.reader.access_token,
                    remote,
                    local / name,
                )
            for _remote, name, digest in files:
                if sha256_file(local / name) != digest:
                    raise SystemExit(f"{name} of order {task['order']} differs")

        self.phase("download", fetch, times)
        if (local / info["file_name"]).stat().st_size != size:
            raise SystemExit(f"the downloaded image of {task['order']} differs")
        shutil.rmtree(local)
        # The warehouse's copy is of no more use: disk for the next order.
        shutil.rmtree(self.work / "warehouse" / upload_folder, ignore_errors=True)
        return {**times, "size": size, "blocks": blocks}

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        if self.registry is not None:
            self.registry.stop()
        if self.content_server is not None:
            self.content_server.close()


def run(args, work: Path) -> None:
    bench = Bench(args, work)
    try:
        bench.start()
        tasks = bench.claim_all()
        texts = {task["recipe_text"] for task in tasks.values()}
        # Every order's recipe names the same OCI images: stand-ins for them.
        idents = {
            image["ident"]
            for text in texts
            for image in yaml.safe_load(text)["oci_images"]
        }
        bench.registry.stand_in_for(sorted(idents), bench.layout)
        bench.mirrors = parse_mirrors([f"ghcr.io={bench.registry.url}"])
        orders = bench.ids["orders"]
        by_size_round = {(s, r): order for order, (s, r, _b) in orders.items()}
        results: dict[int, list[dict]] = {size: [] for size in args.cards}
        cache_dir = work / "cache"
        with ContentCache(cache_dir, 2**40, allowed=Allowed.parse([LOOPBACK])) as cache:
            # Not measured: brings the content into the cache, as a creator's
            # first order of this content would.
            warm = work / "warm-up"
            start = time.perf_counter()
            first = next(iter(tasks.values()))
            build(
                parse_recipe(first["recipe_text"]),
                warm / "image.img",
                cache=cache,
                work_dir=warm / "build",
                mirrors=bench.mirrors,
            )
            warm_up = time.perf_counter() - start
            shutil.rmtree(warm)
            for round_ in range(args.rounds):
                sizes = args.cards if round_ % 2 == 0 else args.cards[::-1]
                for size in sizes:
                    order = by_size_round[size, round_]
                    result = bench.run_order(tasks[order], cache)
                    result["min_size"] = orders[order][2]
                    results[size].append(result)
                    done = result["seconds"]
                    print(
                        f"round {round_ + 1} {size:>4} GB: "
                        + ", ".join(f"{p} {done[p]:.1f} s" for p in PHASES),
                        flush=True,
                    )
        report(args, bench, texts, results, warm_up)
    finally:
        bench.stop()


def table(cards: list[int], results: dict, kind: str) -> None:
    """Per phase, the median over the rounds of each card size, and the ratio of
    the last size to the first."""
    first, last = cards[0], cards[-1]
    heads = "".join(f"{size:>9} GB" for size in cards)
    print(f"{'':10}{heads}   {last}/{first}")
    medians = {
        size: {
            phase: statistics.median(r[kind][phase] for r in runs) for phase in PHASES
        }
        for size, runs in results.items()
    }
    for size in medians:
        medians[size]["total"] = sum(medians[size].values())
    for phase in (*PHASES, "total"):
        row = "".join(f"{medians[size][phase]:10.1f} s" for size in cards)
        ratio = medians[last][phase] / max(medians[first][phase], 1e-9)
        print(f"{phase:10}{row}   {ratio:5.2f} x")
    ratio = medians[last]["total"] / medians[first]["total"]
    met = "met" if ratio <= 1.1 else "NOT met"
    print(f"target    total {last}/{first} <= 1.10 x: {met} ({ratio:.2f} x)")


def report(args, bench, texts, results, warm_up) -> None:
    content_bytes = sum(path.stat().st_size for path in bench.content)
    budget = budget_of(next(iter(texts)))
    target = budget["base"] + budget["content"] + budget["margin"]
    print()
    print(f"date          {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine       {platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.system()} {platform.release()}, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"content       {content_bytes / GIB:.2f} GiB in {len(bench.content)} files")
    print(f"recipes       {len(texts)} distinct text(s) for {len(args.cards)} sizes")
    print(f"warm-up       {warm_up:.1f} s (content into the cache, not measured)")
    print(f"rounds        {args.rounds}; medians of the rounds below")
    for kind, title in (
        ("seconds", "wall seconds"),
        ("cpu", "CPU seconds (this process and its tools, the API, the warehouse)"),
    ):
        print()
        print(title)
        table(args.cards, results, kind)
    print()
    print("image bytes per card size (the same content):")
    for size, runs in results.items():
        sizes = {r["size"] for r in runs}
        blocks = max(r["blocks"] for r in runs)
        print(
            f"  {size:>4} GB  image {'/'.join(str(s) for s in sorted(sizes))} bytes "
            f"({max(sizes) / GIB:.3f} GiB), allocated {blocks / GIB:.3f} GiB, "
            f"server's image_bytes {runs[0]['min_size']}"
        )
    image = max(r["size"] for runs in results.values() for r in runs)
    print(
        f"budget        base {budget['base'] / GIB:.3f} + content "
        f"{budget['content'] / GIB:.3f} (files {content_bytes / GIB:.3f}, the rest "
        f"OCI images and config as declared) + margin {budget['margin'] / GIB:.3f} "
        f"= {target / GIB:.3f} GiB ({target} bytes)"
    )
    # The creator rounds the image up to its 4 MiB alignment; card sizes are
    # multiples of it (apps/orders/cards.py), so that never makes it miss a card.
    aligned = -(-target // ALIGNMENT) * ALIGNMENT
    verdict = "within" if image <= aligned else "OVER"
    print(
        f"image         {image} bytes = budget {image - target:+d} bytes "
        f"({image / target:.4f} x): {verdict} the budget rounded up to the "
        f"creator's 4 MiB alignment ({aligned})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--content-gib", type=float, default=1.0)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--cards", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install {tool}")
    work = Path(tempfile.mkdtemp(prefix="card-sizes-bench-", dir=args.work))
    try:
        run(args, work)
    finally:
        if args.keep:
            print(f"kept          {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
