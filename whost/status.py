"""``whost status``: what the API knows of this host: its workers, each slot,
the card in it, the task and its progress.

A writer account sees its own workers with their slots (``GET
/api/v1/workers/``) and the tasks they hold (``GET /api/v1/tasks/``): enough,
no endpoint of its own is needed.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime

from whost.config import Config
from whost.readers import gigabytes


@dataclass
class Row:
    slot: str
    state: str
    card: str
    task: str
    percent: float | None
    message: str


@dataclass
class Status:
    workers: list = field(default_factory=list)  # this host's, from the API
    tasks: dict = field(default_factory=dict)  # id -> task held by them
    rows: list = field(default_factory=list)

    def worker_lines(self) -> list[str]:
        lines = []
        for kind in ("downloader", "writer"):
            found = [w for w in self.workers if w["kind"] == kind]
            if not found:
                lines.append(f"{kind}: never registered (whost start)")
                continue
            worker = max(found, key=lambda w: w.get("last_seen") or "")
            state = "online" if worker["online"] else "offline"
            line = f"{kind}: {state}, last seen {ago(worker.get('last_seen'))}"
            if kind == "downloader":
                held = [
                    t
                    for t in self.tasks.values()
                    if t["kind"] == "download" and t.get("worker")
                ]
                for task in held:
                    line += (
                        f"; downloading order {task['order'][:8]} "
                        f"({task.get('phase') or task['status']} "
                        f"{task.get('percent') or 0:.0f}%)"
                    )
            lines.append(line)
        return lines


def ago(stamp: str | None, now: datetime | None = None) -> str:
    if not stamp:
        return "never"
    seconds = (
        (now or datetime.now(UTC)) - datetime.fromisoformat(stamp)
    ).total_seconds()
    seconds = max(0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.0f} h ago"


def results(answer):
    return answer.get("results", []) if isinstance(answer, dict) else answer or []


def fetch(api, config: Config) -> Status:
    workers = [
        w
        for w in results(api.get("api/v1/workers/", limit=500))
        if w["host"] == config.host
    ]
    tasks = {t["id"]: t for t in results(api.get("api/v1/tasks/", limit=500))}
    status = Status(workers=workers, tasks=tasks)
    writers = [w for w in workers if w["kind"] == "writer"]
    reported = {}
    if writers:
        writer = max(writers, key=lambda w: w.get("last_seen") or "")
        reported = {slot["name"]: slot for slot in writer["slots"]}
    for name in [*config.slots, *(n for n in reported if n not in config.slots)]:
        slot = reported.get(name)
        if slot is None:
            status.rows.append(
                Row(
                    name,
                    "unknown",
                    "-",
                    "-",
                    None,
                    "the writer has not reported it "
                    "(whost start, or whost restart after naming it)",
                )
            )
            continue
        task = tasks.get(slot.get("task") or "")
        what = "-"
        if task is not None:
            what = f"copy {task.get('copy_number') or '?'} of order {task['order'][:8]}"
        capacity = slot.get("card_capacity")
        busy = slot["state"] in {"writing", "verifying", "done"}
        status.rows.append(
            Row(
                slot=name,
                state=slot["state"],
                card=gigabytes(capacity) if capacity else "-",
                task=what,
                percent=slot.get("percent") if busy else None,
                message=slot.get("message", ""),
            )
        )
    return status


def table(rows: list[Row]) -> list[str]:
    header = ("slot", "state", "card", "task", "progress", "message")
    cells = [header] + [
        (
            row.slot,
            row.state,
            row.card,
            row.task,
            "-" if row.percent is None else f"{row.percent:.0f}%",
            row.message,
        )
        for row in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header) - 1)]
    return [
        "  ".join(c[i].ljust(widths[i]) for i in range(len(header) - 1)) + "  " + c[-1]
        for c in cells
    ]
