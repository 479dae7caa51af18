"""What tests of download links share: the claims a link's token carries, read
as the warehouse reads them (RS256 with the API's public key, the audience)."""

from urllib.parse import parse_qs, urlsplit

import jwt
from django.conf import settings

from apps.orders.links import AUDIENCE


def link_claims(url: str) -> dict:
    """The verified claims of a download link's token; raises if it is bad."""
    token = parse_qs(urlsplit(url).query)["token"][0]
    header = jwt.get_unverified_header(token)
    assert header["kid"] == settings.JWT_PUBLIC_JWK["kid"], header
    return jwt.decode(
        token,
        settings.JWT_PRIVATE_KEY.public_key(),
        algorithms=["RS256"],
        audience=AUDIENCE,
    )
