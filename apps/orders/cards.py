"""SD-cards: what each nominal size really holds, and which image fits on which.

Cards are sold in "GB" of 10**9 bytes and expose less than that: the controller keeps
spare blocks for wear levelling and bad blocks. Reported capacities of common cards
range from roughly 95% to 99.8% of nominal (a typical 32 GB card holds
31,914,983,424 bytes) and vary between brands and batches of the same brand. An image
one sector too big is unwritable, so we size images for the smallest card we may get:
0.93 x nominal, rounded down to a 4 MiB multiple (the erase-block size partitions are
aligned on). The table keeps the computed values so a change is visible in a diff.

Images are sized to their content, not to the card: offspot-config's minimum image
size (``Order.image_bytes``, see ``apps.orders.recipes``) must fit the card's usable
bytes. The server alone applies this table: a write task asks for a card of at least
the usable bytes of the size ordered (``Task.needed_bytes``).
"""

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

GIB = 1024**3
#: Partitions are aligned on the erase-block size.
ALIGNMENT = 4 * 1024**2
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
CARD_SIZES = sorted(USABLE_BYTES)


def usable_bytes(size_gb: int) -> int:
    """Bytes an image for a card of nominal ``size_gb`` GB may use."""
    try:
        return USABLE_BYTES[size_gb]
    except (KeyError, TypeError):
        sizes = ", ".join(str(size) for size in CARD_SIZES)
        raise ValueError(
            f"unknown SD-card size {size_gb!r} GB: use one of {sizes}"
        ) from None


def smallest_card_gb(image_bytes: int) -> int | None:
    """The smallest card size that holds an image of this size, or None."""
    return next(
        (size for size in CARD_SIZES if USABLE_BYTES[size] >= image_bytes), None
    )


def check_fits(image_bytes: int, card_size_gb: int) -> None:
    """Refuse an image too big for the card, saying by how much and what fits."""
    usable = usable_bytes(card_size_gb)
    if image_bytes <= usable:
        return
    fits = smallest_card_gb(image_bytes)
    advice = (
        _("Choose a %(size)d GB card or remove content.") % {"size": fits}
        if fits
        else _("Remove content: no card size is big enough.")
    )
    raise ValidationError(
        {
            "card_size_gb": _(
                "The image needs %(need).2f GiB (the base system, the content and "
                "offspot-config's margin), but a %(card)d GB card holds "
                "%(usable).2f GiB: %(over).2f GiB too much. "
            )
            % {
                "need": image_bytes / GIB,
                "card": card_size_gb,
                "usable": usable / GIB,
                "over": (image_bytes - usable) / GIB,
            }
            + advice
        }
    )
