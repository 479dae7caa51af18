"""The writer: one process for all card slots of a writer host.

One process, one thread per slot, because the API knows one writer per host
that owns all its slots (registration replaces the slot list, so a process per
slot would unregister its neighbours), one udev monitor serves every slot, and
one login keeps one token fresh. The flash engine spends its time in system
calls and hashing, which release the GIL, so slots write at full speed side by
side (workers/writer/tests/test_flash.py writes two cards in two threads).

Per slot: wait for a card → claim a write task for this slot with the card's
capacity → flash and verify (only the bmap's blocks, first MiB last) → report
done or the card's failure → wait until the card is taken out → again. A card
problem (too small, write error, verify mismatch, pulled out) fails that card,
not the copy: the API puts the copy back in the queue for the next card.
"""

import argparse
import logging
import os
import threading
import time
from pathlib import Path

from whost.config import ConfigError, writer_slots
from workers.common.api import ApiError
from workers.common.hashing import sha256_file
from workers.common.lease import (
    CANCELED,
    STOPPED,
    SUCCEEDED,
    Failure,
    Lease,
    failed,
    run_under_lease,
)
from workers.common.names import CardFailure, Event, SlotState, WorkerKind
from workers.common.progress import PhaseBar
from workers.common.worker import UsageError, Worker, add_common_options, env_default
from workers.writer import flash as engine
from workers.writer.slots import (
    FILE,
    Card,
    SlotMonitor,
    card_in,
    is_file_slot,
    parse_slots,
    slot_path,
)

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DEVICE_PATH_CHARS = 255  # what the API keeps of a slot's path
REPORT_EVERY = 2.0  # seconds between slot progress reports (the UI polls anyway)
HEARTBEAT_EVERY = 30.0  # idle slots do not claim: say we are alive


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers.writer",
        description="Write and verify SD-cards in this host's slots.",
    )
    add_common_options(parser)
    parser.add_argument(
        "--slot",
        action="append",
        default=[],
        metavar="NAME=DEVICE",
        help="a card slot and its stable device path, e.g. "
        "slot-1=/dev/disk/by-path/pci-0000:00:14.0-usb-0:1:1.0-scsi-0:0:0:0, or "
        "a file slot, slot-1=file:/srv/cards/slot-1 (a card is in while that "
        "path is a non-empty regular file or a symlink to one; no root needed); "
        "repeat for each slot (WRITER_SLOTS='a=/dev/…,b=/dev/…')",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=env_default("WHOST_CONFIG"),
        metavar="FILE",
        help="take the slots named with whost from its configuration file, e.g. "
        "/etc/whost/whost.toml (WHOST_CONFIG), instead of --slot",
    )
    parser.add_argument(
        "--image-dir",
        type=Path,
        default=env_default("IMAGER_IMAGE_DIR", "var/images"),
        help="where the downloader keeps images, <order>/<file> (IMAGER_IMAGE_DIR)",
    )
    return parser


class Writer(Worker):
    kind = WorkerKind.WRITER

    @property
    def lease_interval(self) -> float:
        return self.options.renew  # --renew / IMAGER_RENEW

    def __init__(self, options, api=None):
        specs = list(options.slot)
        if options.config:
            if specs:
                raise UsageError("give --slot or --config, not both")
            specs = whost_slots(options.config)
        if not specs and env_default("WRITER_SLOTS"):
            specs = [env_default("WRITER_SLOTS")]
        if not specs:
            raise UsageError(
                "give at least one --slot NAME=/dev/disk/by-path/… or "
                "NAME=file:/path (or WRITER_SLOTS)"
            )
        try:
            paths = parse_slots(specs)
        except ValueError as exc:
            raise UsageError(f"--slot {exc}") from exc
        resolved = {}
        for name, path in paths.items():
            if is_file_slot(path):
                # The slot is the path itself, not the card it points to now.
                file = slot_path(path)
                folder = os.path.realpath(os.path.dirname(file))
                real = FILE + os.path.join(folder, os.path.basename(file))
            else:
                real = os.path.realpath(path)
            if real in resolved:
                what = "file" if is_file_slot(path) else "device"
                raise UsageError(
                    f"--slot {name} and {resolved[real]} are the same {what} {real}"
                )
            resolved[real] = name
            if is_file_slot(path):
                if not os.path.isdir(os.path.dirname(slot_path(path))):
                    log.warning(
                        "slot %s: the folder of %s does not exist (yet): no card "
                        "can go in until it does",
                        name,
                        slot_path(path),
                    )
            elif Path(path).name.startswith(("sd", "mmcblk")):
                log.warning(
                    "slot %s uses %s, a name the kernel may give another reader "
                    "after a reboot; prefer a /dev/disk/by-path/ link",
                    name,
                    path,
                )
        super().__init__(options, api)
        self.slots = {
            name: SlotRunner(self, name, path) for name, path in paths.items()
        }
        self.tasks_done = threading.Event()  # for --once
        self.monitor: SlotMonitor | None = None

    def capabilities(self) -> dict:
        return {"slots": len(self.slots)}

    def registration(self) -> dict:
        return {
            **super().registration(),
            "slots": [
                {"name": slot.name, "device_path": shown(slot.spec)}
                for slot in self.slots.values()
            ],
        }

    def run(self) -> int:
        self.register()
        devices = {
            name: slot.path for name, slot in self.slots.items() if not slot.is_file
        }
        if len(devices) < len(self.slots):
            log.info(
                "file slots get no kernel events: looking at them every %g s",
                self.options.poll,
            )
        if devices:
            self.monitor = SlotMonitor(devices, self.wake)
            try:
                self.monitor.start()
            except (OSError, ImportError) as exc:
                # Polling alone still works, only slower to notice a card.
                log.warning(
                    "no udev events (%s); looking at the slots every %.0f s",
                    exc,
                    self.options.poll,
                )
                self.monitor = None
        threads = [
            threading.Thread(target=slot.run, name=f"slot-{slot.name}", daemon=True)
            for slot in self.slots.values()
        ]
        for thread in threads:
            thread.start()
        try:
            while not self.stopping.wait(HEARTBEAT_EVERY):
                try:
                    self.api.post(f"api/v1/workers/{self.worker_id}/heartbeat/")
                except ApiError as exc:
                    log.warning("heartbeat failed: %s", exc)
        finally:
            self.stopping.set()
            for slot in self.slots.values():
                slot.wake.set()
            # A slot that is writing finishes its card first: stopping half-way
            # would spoil it.
            for thread in threads:
                thread.join()
            if self.monitor is not None:
                self.monitor.stop()
            for slot in self.slots.values():
                slot.report(SlotState.OFFLINE, message="The writer is stopped.")
        return 0

    def wake(self, name: str, action: str) -> None:
        self.slots[name].wake.set()

    def task_finished(self) -> None:
        if self.options.once:
            self.stop()

    def on_progress(
        self, slot: "SlotRunner", phase: str, done: int, total: int
    ) -> None:
        """Called for each piece written or verified; a place for tests to act
        at a precise moment (pull a card half-way)."""


class SlotRunner:
    """One card reader and the loop that serves it."""

    def __init__(self, writer: Writer, name: str, spec: str):
        self.writer = writer
        self.api = writer.api
        self.name = name
        self.spec = spec  # as given: a file slot keeps its file: prefix
        self.path = slot_path(spec)  # what the flash engine opens
        self.is_file = is_file_slot(spec)
        self.wake = threading.Event()
        self.state: str | None = None
        self.message = ""
        self.card: Card | None = None
        # After a card is done or failed, nothing happens until it is taken out.
        self.spent: Card | None = None

    # -- the loop --------------------------------------------------------------

    def run(self) -> None:
        writer = self.writer
        while not writer.stopping.is_set():
            try:
                self.step()
            except Exception:
                # One slot's surprise must not stop the others; look again later.
                log.exception("slot %s: unexpected error", self.name)
            self.wait()

    def wait(self) -> None:
        self.wake.wait(self.writer.options.poll)
        self.wake.clear()

    def step(self) -> None:
        """Look at the slot once and do what its state asks for."""
        card = card_in(self.spec)
        if card is None:
            if self.spent is not None or self.state != SlotState.EMPTY:
                self.spent = None
                self.card = None
                log.info("slot %s: empty; insert a card", self.name)
                self.report(SlotState.EMPTY, message="Insert a card.")
            return
        if self.spent is not None:
            if card == self.spent:
                return  # still the finished card: wait for the operator
            self.spent = None  # swapped between two looks: a new card
        if card != self.card:
            log.info(
                "slot %s: card in (%s, %s)",
                self.name,
                gigabytes(card.capacity),
                card.serial or "no serial",
            )
        self.card = card
        try:
            engine.check_target(self.path)
        except engine.FlashError as exc:
            self.finish(SlotState.FAILED, f"{exc}. Remove the card.", card)
            return
        if self.is_file and not self.file_card_usable(card):
            return
        body = {
            "worker": self.writer.worker_id,
            "slot": self.name,
            "card_capacity": card.capacity,
        }
        if card.serial:  # the API refuses a blank one
            body["card_serial"] = card.serial
        try:
            answer = self.api.post("api/v1/tasks/claim/", body)
        except ApiError as exc:
            log.warning("slot %s: claim failed: %s", self.name, exc)
            return
        task = answer["task"]
        if task is None:
            self.idle(card, answer.get("reason") or "")
            return
        self.write(task, card)
        self.writer.task_finished()

    def file_card_usable(self, card: Card) -> bool:
        """A card file the engine would refuse fails here, before a copy is
        claimed for it: the engine's refusal would count against the image."""
        if card.capacity % engine.FILE_SECTOR:
            self.finish(
                SlotState.FAILED,
                f"The card file {card.device} has {card.capacity} bytes, not a "
                f"multiple of {engine.FILE_SECTOR}: remove it and insert one "
                f"made with truncate -s 8G.",
                card,
            )
            return False
        if not os.access(card.device, os.R_OK | os.W_OK):
            self.finish(
                SlotState.FAILED,
                f"The writer may not read and write the card file {card.device}: "
                "remove it and insert one it owns.",
                card,
            )
            return False
        return True

    def idle(self, card: Card, reason: str) -> None:
        """A card is in but no copy was given to it: say why, or ask for
        another card when this one is smaller than every image here."""
        smallest = self.smallest_local_image()
        if smallest is not None and card.capacity < smallest:
            self.finish(
                SlotState.FAILED,
                f"Card too small: it holds {card.capacity} bytes, the images here "
                f"need at least {smallest}. Remove it and insert a bigger card.",
                card,
            )
            return
        message = f"Card ready ({gigabytes(card.capacity)}). {reason}".strip()
        if (self.state, self.message) != (SlotState.CARD_PRESENT, message):
            log.info("slot %s: %s", self.name, message)
            self.report(SlotState.CARD_PRESENT, message=message)

    def smallest_local_image(self) -> int | None:
        sizes = [
            path.stat().st_size
            for path in self.writer.options.image_dir.glob("*/*.img")
            if path.is_file()
        ]
        return min(sizes, default=None)

    # -- one copy ----------------------------------------------------------------

    def write(self, task: dict, card: Card) -> None:
        image = task["work"]["image"]
        copy = f"copy {task.get('copy_number') or '?'} of order {task['order'][:8]}"
        bar = PhaseBar(f"{self.name}", mode=self.writer.options.progress)
        log.info("slot %s: writing %s", self.name, copy)
        outcome = run_under_lease(
            self.api,
            task,
            lambda lease: self.flash(task, image, card, lease, bar, copy),
            interval=self.writer.lease_interval,
            judge=self.judge,
            bar=bar,
        )
        if outcome.state == SUCCEEDED:
            self.finish(
                SlotState.DONE,
                f"{copy.capitalize()} written and verified: remove the card "
                "and insert the next one.",
                card,
            )
        elif outcome.state == CANCELED:
            self.finish(
                SlotState.FAILED, "The order was canceled: remove the card.", card
            )
        elif outcome.state == STOPPED:
            why = str(outcome.error).rstrip(".")
            self.finish(SlotState.FAILED, f"{why}. Remove the card.", card)
        elif outcome.failure.type == Event.CARD_FAILED:
            what = CARD_FAILURES[outcome.failure.data["reason"]]
            self.finish(
                SlotState.FAILED, f"{what}: remove it and insert another.", card
            )
        else:
            why = outcome.failure.message
            # The task's event has the whole error; an API failure is told
            # nowhere but here, so it stays whole.
            why = why[:180] if outcome.failure.report else why
            self.finish(SlotState.FAILED, f"{why}. Remove the card.", card)

    def judge(self, exc: Exception) -> Failure:
        """How a copy that failed is reported: a card problem fails the card
        only, an unusable image the task."""
        if isinstance(exc, CardProblem):
            return card_failure(exc.reason, str(exc))
        if isinstance(exc, engine.InvalidInput | OSError):
            # The image on this host is unusable: no card would do better.
            return failed(str(exc))
        if isinstance(exc, engine.FlashError):
            return card_failure(CardFailure.WRITE_ERROR, str(exc))
        if isinstance(exc, ApiError):
            return Failure(f"The API failed: {exc}", report=False)
        # A bug must not leave the task held until its lease expires, nor let
        # the slot claim the next copy for a card in an unknown state.
        log.exception("slot %s: writing failed unexpectedly", self.name)
        return failed(f"the writer failed: {exc!r}")

    def flash(self, task, image, card: Card, lease: Lease, bar, copy: str) -> dict:
        folder = self.writer.options.image_dir / task["order"]
        image_path = folder / image["file_name"]
        bmap_path = folder / image["bmap_name"] if image.get("bmap_name") else None
        self.check_image(image, image_path, bmap_path)
        if card.capacity < image["size"]:
            raise CardProblem(
                CardFailure.TOO_SMALL,
                f"the card holds {card.capacity} bytes but the image needs "
                f"{image['size']}: use a bigger card",
            )
        last = {"at": 0.0, "phase": ""}

        def progress(phase: str, done: int, total: int) -> None:
            lease.check()  # a cancel or a lost lease stops the copy here
            percent = 100.0 * done / total if total else 100.0
            lease.progress(phase, percent)
            bar.update(phase, percent)
            now = time.monotonic()
            if phase != last["phase"] or now - last["at"] >= REPORT_EVERY:
                last.update(at=now, phase=phase)
                doing = "Writing" if phase == SlotState.WRITING else "Verifying"
                self.report(
                    phase,
                    percent=percent,
                    message=f"{doing} {copy}: do not remove the card.",
                )
            self.writer.on_progress(self, phase, done, total)

        try:
            result = engine.flash(
                image_path,
                self.path,
                bmap_path,
                file_ok=self.is_file,
                progress=progress,
            )
        except engine.CardTooSmall as exc:
            raise CardProblem(CardFailure.TOO_SMALL, str(exc)) from None
        except engine.CardRemoved as exc:
            raise CardProblem(CardFailure.REMOVED, str(exc)) from None
        except engine.VerifyMismatch as exc:
            raise CardProblem(CardFailure.VERIFY_MISMATCH, str(exc)) from None
        return {
            "slot": self.name,
            "card_capacity": card.capacity,
            "card_serial": card.serial,
            "bytes_written": result.bytes_written,
            "bytes_verified": result.bytes_verified,
            "write_seconds": round(result.write_seconds, 3),
            "verify_seconds": round(result.verify_seconds, 3),
            "io_retries": result.io_retries,
        }

    def check_image(self, image: dict, path: Path, bmap_path: Path | None) -> None:
        """The downloader verified the image; check it is still whole (size,
        and the small bmap's hash: its range checksums then vouch for the card)."""
        hint = "the writer's --image-dir must be the downloader's"
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise engine.InvalidInput(f"{path} is missing: {hint}") from None
        if size != image["size"]:
            raise engine.InvalidInput(
                f"{path} has {size} bytes, the image {image['size']}: it was "
                "changed after the download; let the downloader fetch it again"
            )
        if bmap_path is None:
            return
        try:
            digest = sha256_file(bmap_path)
        except FileNotFoundError:
            raise engine.InvalidInput(f"{bmap_path} is missing: {hint}") from None
        if image.get("bmap_sha256") and digest != image["bmap_sha256"]:
            raise engine.InvalidInput(
                f"{bmap_path} does not match the sha256 the creator declared; "
                "let the downloader fetch it again"
            )

    # -- outcomes ----------------------------------------------------------------

    def finish(self, state: str, message: str, card: Card) -> None:
        self.spent = card
        level = logging.INFO if state == SlotState.DONE else logging.WARNING
        log.log(level, "slot %s: %s", self.name, message)
        self.report(
            state, percent=100 if state == SlotState.DONE else 0, message=message
        )

    def report(self, state: str, *, percent: float = 0, message: str = "") -> None:
        """Tell the API what the slot shows; a failed report is not worth a card."""
        self.state, self.message = state, message
        card = self.card
        body = {
            "state": state,
            "percent": round(max(0.0, min(100.0, percent)), 1),
            "card_capacity": card.capacity
            if card and state != SlotState.EMPTY
            else None,
            "message": message[:255],
        }
        if card and card.serial and state != SlotState.EMPTY:
            # The API refuses a blank serial; leaving it out clears it.
            body["card_serial"] = card.serial
        try:
            self.api.post(
                f"api/v1/workers/{self.writer.worker_id}/slots/{self.name}/", body
            )
        except ApiError as exc:
            log.warning("slot %s: could not report %s: %s", self.name, state, exc)


def whost_slots(path: Path) -> list[str]:
    """``NAME=DEVICE`` for each slot named with whost (README: Set up a writer
    host), which records the readers' ports and reads its own file."""
    try:
        return [f"{name}={device}" for name, device in writer_slots(path).items()]
    except ConfigError as exc:
        raise UsageError(f"--config {exc}") from None


def shown(spec: str, limit: int = DEVICE_PATH_CHARS) -> str:
    """A slot's path as the API keeps it: a long one keeps its end, which
    names the port or the file."""
    if len(spec) <= limit:
        return spec
    prefix = FILE if is_file_slot(spec) else ""
    return prefix + "…" + spec[-(limit - len(prefix) - 1) :]


def gigabytes(size: int) -> str:
    """Cards are sold in decimal gigabytes: say it the way the label does."""
    return f"{size / 10**9:.1f} GB"


#: what the slot tells the operator about a card that failed
CARD_FAILURES = {
    CardFailure.TOO_SMALL: "The card is too small",
    CardFailure.WRITE_ERROR: "The card could not be written",
    CardFailure.VERIFY_MISMATCH: "The card did not verify",
    CardFailure.REMOVED: "The card was removed while it was written",
}


def card_failure(reason: str, message: str) -> Failure:
    """A card that cannot take the copy: the copy waits for another card."""
    return Failure(
        message,
        type=Event.CARD_FAILED,
        data={"reason": reason, "message": message[:500]},
    )


class CardProblem(Exception):
    """This card cannot take the copy; ``reason`` is the API's card failure."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
