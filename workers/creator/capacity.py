"""Usable capacity of SD-cards sold by nominal size.

Cards are sold in "GB" of 10**9 bytes and expose less than that: the controller keeps
spare blocks for wear levelling and bad blocks. Reported capacities of common cards
range from roughly 95% to 99.8% of nominal (a typical 32 GB card holds
31,914,983,424 bytes) and vary between brands and batches of the same brand. An image
one sector too big is unwritable, so we size images for the smallest card we may get:
0.93 x nominal, rounded down to a 4 MiB multiple (the erase-block size partitions are
aligned on). The table keeps the computed values so a change is visible in a diff.
"""

MIB = 1024 * 1024
ALIGNMENT = 4 * MIB
#: Fraction of the nominal size we dare use: below every card reported so far.
HEADROOM_FACTOR = 0.93

#: nominal size in GB -> bytes an image may use (0.93 x n x 10**9, floored to 4 MiB)
USABLE_BYTES: dict[int, int] = {
    8: 7_436_500_992,
    16: 14_877_196_288,
    32: 29_758_586_880,
    64: 59_517_173_760,
    128: 119_038_541_824,
    256: 238_077_083_648,
    512: 476_158_361_600,
}


def usable_bytes(size_gb: int) -> int:
    """Bytes an image for a card of nominal `size_gb` GB may use."""
    try:
        return USABLE_BYTES[size_gb]
    except (KeyError, TypeError):
        sizes = ", ".join(str(size) for size in USABLE_BYTES)
        raise ValueError(
            f"unknown SD-card size {size_gb!r} GB: use one of {sizes}"
        ) from None
