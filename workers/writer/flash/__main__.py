"""The flash engine on its own: ``python -m workers.writer.flash IMAGE DEVICE``."""

import argparse
import sys

from workers.writer.flash.buffers import MiB
from workers.writer.flash.engine import flash
from workers.writer.flash.errors import (
    CardRemoved,
    CardTooSmall,
    FlashError,
    InvalidInput,
    UnsafeTarget,
    VerifyMismatch,
)

EXIT_CODES = (
    (InvalidInput, 2),
    (CardTooSmall, 3),
    (CardRemoved, 4),
    (VerifyMismatch, 5),
    (UnsafeTarget, 6),
    (FlashError, 1),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        # One line, like every other failure of this tool.
        self.exit(2, f"error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog="python -m workers.writer.flash",
        description="Write a disk image to a card (only mapped blocks with a bmap, "
        "first MiB last) and verify it by reading the card back.",
        epilog="exit codes: 0 ok, 1 other error, 2 bad arguments, 3 card too small, "
        "4 card removed, 5 verification failed, 6 unsafe target (mounted, in use, "
        "system disk)",
    )
    parser.add_argument("image", help="raw image file (may be sparse)")
    parser.add_argument("device", help="block device of the card, e.g. /dev/sdb")
    parser.add_argument("--bmap", help="block map; without it all the image is written")
    parser.add_argument(
        "--force", action="store_true", help="write even if mounted or a system disk"
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="skip reading the card back"
    )
    parser.add_argument(
        "--to-file",
        action="store_true",
        help="DEVICE may be a regular file standing in for a card (tests, demos)",
    )
    parser.add_argument(
        "--buffer-mib", type=int, default=4, choices=range(1, 17), metavar="1-16"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def show(phase: str, done: int, total: int) -> None:
        if phase not in bars:
            for bar in bars.values():
                bar.close()
            bars[phase] = tqdm(
                total=total, desc=phase, unit="B", unit_scale=True, unit_divisor=1024
            )
        bar = bars[phase]
        bar.update(done - bar.n)

    try:
        result = flash(
            args.image,
            args.device,
            args.bmap,
            verify=not args.no_verify,
            force=args.force,
            file_ok=args.to_file,
            progress=None if args.quiet else show,
            buffer_size=args.buffer_mib * MiB,
        )
    except FlashError as exc:
        _close(bars)
        message = " ".join(str(exc).split())
        print(f"error: {message}", file=sys.stderr)
        return next(code for cls, code in EXIT_CODES if isinstance(exc, cls))
    except KeyboardInterrupt:
        _close(bars)
        print("error: interrupted; the card is incomplete", file=sys.stderr)
        return 130
    except OSError as exc:  # e.g. the image's disk failing while it is read
        _close(bars)
        print(f"error: {exc.strerror or exc}", file=sys.stderr)
        return 1
    _close(bars)
    rate = result.bytes_written / MiB / max(result.write_seconds, 1e-9)
    line = (
        f"wrote {result.bytes_written / MiB:.1f} MiB in "
        f"{result.write_seconds:.1f} s ({rate:.1f} MiB/s)"
    )
    if not args.no_verify:
        line += (
            f", verified {result.bytes_verified / MiB:.1f} MiB in "
            f"{result.verify_seconds:.1f} s"
        )
    print(line)
    return 0


def _close(bars) -> None:
    for bar in bars.values():
        bar.close()


if __name__ == "__main__":
    sys.exit(main())
