"""The image's partition table, read and changed with sfdisk on the image
file: the base's FAT boot partition, and the data partition added or grown to
fill the image."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from workers.creator.tools import BuildError, run

MIB = 1024 * 1024
#: partitions start on 4 MiB boundaries: the erase-block size of most SD-cards
ALIGNMENT = 4 * MIB
FAT_TYPES = {
    "1",
    "4",
    "6",
    "b",
    "c",
    "e",
    "ef",
    "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",  # GPT Microsoft basic data
    "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",  # GPT EFI system
}


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # bytes from the start of the image
    size: int  # bytes
    type: str

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(frozen=True)
class PartitionTable:
    label: str  # "dos" or "gpt"
    partitions: tuple[Partition, ...]

    def get(self, number: int) -> Partition | None:
        return next((p for p in self.partitions if p.number == number), None)


def read_partition_table(image: Path) -> PartitionTable:
    """The partition table of an image file, as `sfdisk -J` reads it."""
    result = run(["sfdisk", "-J", str(image)], what=f"read the partitions of {image}")
    try:
        table = json.loads(result.stdout)["partitiontable"]
    except (ValueError, KeyError):
        raise BuildError(
            f"{image} has no partition table: is it a disk image?"
        ) from None
    sector = int(table.get("sectorsize", 512))
    partitions = []
    for entry in table.get("partitions", []):
        suffix = entry["node"][len(str(image)) :].lstrip("p")
        partitions.append(
            Partition(
                number=int(suffix),
                start=int(entry["start"]) * sector,
                size=int(entry["size"]) * sector,
                type=str(entry["type"]),
            )
        )
    return PartitionTable(label=table["label"], partitions=tuple(partitions))


def boot_partition(table: PartitionTable, image: Path) -> Partition:
    for partition in table.partitions:
        if partition.type.upper() in {t.upper() for t in FAT_TYPES}:
            return partition
    raise BuildError(
        f"base image {image} has no FAT boot partition: use a Raspberry Pi image"
    )


def data_partition_start(table: PartitionTable, image: Path) -> int:
    numbers = [p.number for p in table.partitions]
    if numbers == [1, 2, 3]:
        return table.get(3).start
    if numbers == [1, 2]:
        return -(-table.get(2).end // ALIGNMENT) * ALIGNMENT
    raise BuildError(
        f"base image {image} has partitions {numbers}: it needs 1 (boot) and 2 "
        "(root), optionally 3 (data, grown to fill the card)"
    )


def add_data_partition(image: Path, base_table: PartitionTable) -> PartitionTable:
    flags = ["--no-reread", "--no-tell-kernel"]
    if base_table.label == "gpt":
        # The image grew: the backup GPT header must move to the new end.
        run(
            ["sfdisk", *flags, "--relocate", "gpt-bak-std", str(image)], what="move GPT"
        )
    if base_table.get(3) is not None:
        # Keep the start, take all the space, make it a Linux partition.
        run(
            ["sfdisk", *flags, "-N", "3", str(image)],
            stdin=", +, L\n",
            what="grow the data partition",
        )
    else:
        start = data_partition_start(base_table, image) // 512
        run(
            ["sfdisk", *flags, "--append", str(image)],
            stdin=f"start={start}, type=L\n",
            what="add the data partition",
        )
    table = read_partition_table(image)
    if table.get(3) is None:
        raise BuildError(f"sfdisk did not create partition 3 in {image}")
    return table
