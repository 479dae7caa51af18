"""What the demo (and the Docker test) print while an order goes through the chain:
each task's phase as it changes, and the table at the end."""

from __future__ import annotations

import sys
import time
from datetime import datetime

from demo.cards import card_verifies
from demo.chain import Chain
from workers.common.names import TaskKind, TaskStatus


def say(message: str) -> None:
    print(f"\033[1m==> {message}\033[0m" if sys.stdout.isatty() else f"==> {message}")
    sys.stdout.flush()


def seconds(task: dict) -> float | None:
    if not task.get("started_at") or not task.get("finished_at"):
        return None
    start = datetime.fromisoformat(task["started_at"])
    return (datetime.fromisoformat(task["finished_at"]) - start).total_seconds()


class Progress:
    """Prints each task's phase when it changes, and its percentage now and then."""

    def __init__(self, chain: Chain, order_id: str, prefix: str = ""):
        self.chain, self.order_id, self.prefix = chain, order_id, prefix
        self.seen: dict[str, tuple[str, str, float]] = {}

    def show(self) -> list[dict]:
        tasks = self.chain.tasks(self.order_id)
        now = time.monotonic()
        for task in tasks:
            label = (
                self.prefix
                + task["kind"]
                + (f" copy {task['copy_number']}" if task.get("copy_number") else "")
            )
            state = (task["status"], task["phase"] or "")
            last = self.seen.get(task["id"])
            if last is None or last[:2] != state:
                self.seen[task["id"]] = (*state, now)
                phase = f" {task['phase']}" if task["phase"] else ""
                say(f"{label}: {task['status']}{phase}")
            elif task["status"] == TaskStatus.RUNNING and now - last[2] >= 10:
                self.seen[task["id"]] = (*state, now)
                print(
                    f"    {label}: {task['phase']} {task['percent']:.0f}%", flush=True
                )
        return tasks


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), line, *(fmt.format(*r) for r in rows)])


def fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def report(chain: Chain, order_id: str, phases: list[tuple[str, float]]) -> str:
    tasks = chain.tasks(order_id)
    build = next((t for t in tasks if t["kind"] == TaskKind.CREATE), {})
    fetch = next((t for t in tasks if t["kind"] == TaskKind.DOWNLOAD), {})
    bmap = chain.demo / "warehouse" / "orders" / order_id / "image.bmap"
    rows = []
    for task in sorted(
        (t for t in tasks if t["kind"] == TaskKind.WRITE),
        key=lambda t: t["copy_number"],
    ):
        result = task.get("result") or {}
        slot = result.get("slot", "?")
        number = slot.rsplit("-", 1)[-1]
        card = chain.demo / "cards" / f"card-{number}.img"
        verified = "yes" if card.exists() and card_verifies(card, bmap) else "NO"
        rows.append(
            [
                order_id[:8],
                str(task["copy_number"]),
                slot,
                f"{result.get('bytes_written', 0):,}",
                verified,
                fmt_seconds(seconds(build)),
                fmt_seconds(seconds(fetch)),
                fmt_seconds(seconds(task)),
            ]
        )
    header = ["order", "copy", "slot", "bytes written", "sha256 verified"]
    header += ["build+upload", "download", "write+verify"]
    timing = "  ".join(f"{name} {value:.1f} s" for name, value in phases)
    return f"\n{table(rows, header)}\n\nphases: {timing}\n"
