"""Sizes as the client pages show them: binary units, named as such (GiB, MiB),
beside cards sold in decimal GB, so that "7.20 GiB" and "an 8 GB card" are
never read as the same unit."""

from django import template
from django.utils.formats import number_format
from django.utils.translation import gettext as _

from apps.orders.cards import GIB

register = template.Library()
MIB = 1024**2


@register.filter
def binary_size(value) -> str:
    """Bytes in MiB below a GiB, else in GiB, with two decimals."""
    try:
        value = int(value)
    except (TypeError, ValueError):
        return ""
    if value < GIB:
        return _("%(n)s MiB") % {"n": number_format(value / MIB, 1)}
    return _("%(n)s GiB") % {"n": number_format(value / GIB, 2)}


@register.filter
def card_size(value) -> str:
    """A card's nominal size, in the decimal GB cards are sold in."""
    if value in (None, ""):
        return ""
    return _("%(n)s GB") % {"n": value}
