"""Download links of download orders: the image and its ``.bmap`` over HTTP(S),
served by the warehouse that holds them, for whoever has the link.

A link is ``<warehouse download_url>/orders/<order>/<file>?token=<JWT>``. The
token is signed with the API's key (RS256, the JWKS's ``kid``) and verified by
the warehouse alone (``ftp.auth.verify_link``): it names the order, the files it
covers, who asked and when it expires (``DOWNLOAD_LINK_HOURS``, never after the
order's retention). Its ``token_type`` and audience make it useless as an access
token, and an access token useless as a link. Links are made on demand, so the
client's page (or an e-mail) always gets a fresh one.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.accounts.tokens import sign
from apps.common.errors import Conflict
from apps.orders.models import Order, OrderKind, OrderStatus
from apps.scheduler.models import ImageState

#: The claims the warehouse checks (ftp/auth.py says the same).
TOKEN_TYPE = "download"  # noqa: S105 - a claim, not a secret
AUDIENCE = "imager-download"


@dataclass(frozen=True)
class DownloadLink:
    image_url: str
    bmap_url: str
    expires_at: datetime

    def as_dict(self) -> dict:
        return {
            "image_url": self.image_url,
            "bmap_url": self.bmap_url,
            "expires_at": self.expires_at,
        }


def download_link(order: Order, *, user=None, now=None) -> DownloadLink:
    """A fresh link to ``order``'s image and block map, made for ``user`` (who
    asked: the owner by default, named in the warehouse's log). Raises
    ``Conflict`` saying why there is none: not a download order, not built (or
    over), no verified image, or a warehouse without a download server.

    Callers check that ``user`` may see the order (``Order.objects.visible_to``).
    The order's ``image`` and its ``warehouse`` are read: prefetch them for lists.
    """
    now = now or timezone.now()
    if order.kind != OrderKind.DOWNLOAD:
        raise Conflict(
            "not_a_download_order",
            _("Cards are written from this order's image; it has no download link."),
        )
    image = order.image
    expires_at = now + timedelta(hours=settings.DOWNLOAD_LINK_HOURS)
    if order.expires_at is not None:
        expires_at = min(expires_at, order.expires_at)
    if (
        order.status != OrderStatus.BUILT
        or image is None
        or image.state != ImageState.VERIFIED
        or expires_at <= now
    ):
        raise Conflict(
            "not_ready",
            _("The image of this order is not ready to download (status: %(s)s).")
            % {"s": order.get_status_display()},
        )
    base = image.warehouse.download_url.rstrip("/")
    if not base:
        raise Conflict(
            "no_download_server",
            _(
                "The warehouse holding this image serves no downloads; "
                "ask the operators."
            ),
        )
    exp = int(expires_at.timestamp())
    token = sign(
        {
            "token_type": TOKEN_TYPE,
            "aud": AUDIENCE,
            "order": str(order.pk),
            "files": [image.file_name, image.bmap_name],
            "user_id": str(user.pk if user is not None else order.owner_id),
            "iat": int(now.timestamp()),
            "exp": exp,
            "jti": uuid4().hex,
        }
    )
    return DownloadLink(
        image_url=f"{base}/{image.path}?token={token}",
        bmap_url=f"{base}/{image.bmap_path}?token={token}",
        expires_at=datetime.fromtimestamp(exp, UTC),
    )


def download_link_or_none(order: Order, *, user=None) -> DownloadLink | None:
    """``download_link``, or None when the order has none (yet)."""
    try:
        return download_link(order, user=user)
    except Conflict:
        return None
