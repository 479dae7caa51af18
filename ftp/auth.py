"""Tokens checked locally: RS256 signature with the API's published keys (JWKS),
expiry, token type and role. No login waits on the API (DESIGN 4).

Two kinds: access tokens (FTP logins) and download-link tokens, which the API
signs for one order's files (``token_type: download``, audience
``imager-download``); neither is accepted as the other.
"""

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import jwt

from ftp import paths
from ftp.policy import KNOWN_ROLES

log = logging.getLogger(__name__)

ALGORITHM = "RS256"
#: What the API puts in a download link's token (apps/orders/links.py).
LINK_TYPE = "download"
LINK_AUDIENCE = "imager-download"
#: Clocks of the API and the warehouse may differ a little: a fresh link must
#: not be "not yet valid" here.
LINK_LEEWAY = 60


class TokenRefused(Exception):
    """The password is not a usable access token; the message says why.
    ``expired``: the token was good but its time is over."""

    def __init__(self, message: str, *, expired: bool = False):
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True)
class Claims:
    user_id: str
    role: str
    exp: float
    jti: str


@dataclass(frozen=True)
class Link:
    """What a download link allows: these files of this order, until ``exp``."""

    order: str
    files: frozenset[str]
    user_id: str  # who asked the API for the link
    exp: float
    jti: str


def _decode(
    token: str,
    keys: Mapping[str, object],
    *,
    leeway: float,
    require: list[str],
    audience: str | None = None,
    what: str = "the password is not a JWT access token",
) -> dict:
    """The claims of a token signed by one of ``keys``, or ``TokenRefused``.

    ``keys`` maps a key id to an RSA public key. Only RS256 is accepted, whatever
    the token's header claims, so ``alg: none`` and HMAC tricks fail here.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenRefused(what) from exc
    if header.get("alg") != ALGORITHM:
        raise TokenRefused(f"tokens must be signed with {ALGORITHM}")
    kid = header.get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise TokenRefused("the token's signing key is unknown here")
    try:
        return jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            leeway=leeway,
            audience=audience,
            options={"require": require},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenRefused("the token has expired", expired=True) from exc
    except jwt.InvalidSignatureError as exc:
        raise TokenRefused("the token's signature is not valid") from exc
    except jwt.PyJWTError as exc:
        raise TokenRefused(f"the token is not valid ({exc})") from exc


def verify_token(
    token: str, keys: Mapping[str, object], *, leeway: float = 0
) -> Claims:
    """The claims of a valid access token, or ``TokenRefused``."""
    claims = _decode(
        token,
        keys,
        leeway=leeway,
        require=["exp", "iat", "jti", "user_id", "token_type"],
    )
    if claims["token_type"] != "access":  # noqa: S105 - a claim, not a secret
        raise TokenRefused("this is not an access token")
    role = claims.get("role")
    if role not in KNOWN_ROLES:
        raise TokenRefused("the token carries no known role")
    try:
        user_id = str(uuid.UUID(str(claims["user_id"])))
    except ValueError as exc:
        raise TokenRefused("the token's user id is not a UUID") from exc
    return Claims(user_id, role, float(claims["exp"]), str(claims["jti"]))


def verify_link(
    token: str, keys: Mapping[str, object], *, leeway: float = LINK_LEEWAY
) -> Link:
    """What a download link's token allows, or ``TokenRefused`` (``expired``
    set when only its time is over)."""
    claims = _decode(
        token,
        keys,
        leeway=leeway,
        require=["exp", "iat", "jti", "aud", "token_type", "order", "files"],
        audience=LINK_AUDIENCE,
        what="the link's token is not a JWT",
    )
    if claims["token_type"] != LINK_TYPE:
        raise TokenRefused("this is not a download link's token")
    order, files = claims["order"], claims["files"]
    if not isinstance(order, str) or not paths.ORDER_ID.match(order):
        raise TokenRefused("the link names no order")
    if (
        not isinstance(files, list)
        or not files
        or not all(isinstance(f, str) and paths.FILE_NAME.match(f) for f in files)
    ):
        raise TokenRefused("the link names no image file")
    return Link(
        order,
        frozenset(files),
        str(claims.get("user_id", "")),
        float(claims["exp"]),
        str(claims["jti"]),
    )


def parse_jwks(document) -> dict[str, object]:
    """RSA public keys by key id from a JWKS document; other keys are skipped."""
    keys = {}
    for entry in (document or {}).get("keys", []):
        if entry.get("kty") != "RSA" or entry.get("alg", ALGORITHM) != ALGORITHM:
            continue
        if entry.get("use", "sig") != "sig" or not entry.get("kid"):
            continue
        try:
            keys[entry["kid"]] = jwt.PyJWK(entry, ALGORITHM).key
        except jwt.PyJWTError as exc:
            log.warning("skipping an unusable JWKS key %s: %s", entry.get("kid"), exc)
    return keys


class KeySet:
    """The API's signing keys, refreshed periodically and when a token names an
    unknown key (at most once per ``min_interval`` seconds, so forged key ids
    cannot make us hammer the API). Refreshes run in the background."""

    def __init__(
        self,
        fetch: Callable[[], dict],
        *,
        min_interval: float = 30,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._fetch = fetch
        self._keys: dict[str, object] = {}
        self.min_interval = min_interval
        self._clock = clock
        self.fetched_at = float("-inf")
        self.wanted = threading.Event()

    def refresh(self) -> int:
        """Fetch the keys now; raises what the fetch raises. Returns their count."""
        keys = parse_jwks(self._fetch())
        if not keys:
            raise ValueError("the API's JWKS holds no RS256 signing key")
        self._keys = keys  # replaced whole: readers never see a half-built dict
        self.fetched_at = self._clock()
        return len(keys)

    def verify(self, token: str) -> Claims:
        return self._verified(verify_token, token)

    def verify_link(self, token: str) -> Link:
        return self._verified(verify_link, token)

    def _verified(self, verify, token: str):
        keys = self._keys
        try:
            return verify(token, keys)
        except TokenRefused:
            kid = _kid(token)
            if kid and kid not in keys:
                self.wanted.set()
            raise

    def due(self) -> bool:
        """Whether a wanted refresh may run now (rate limit)."""
        return self._clock() - self.fetched_at >= self.min_interval


def _kid(token: str) -> str:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return ""
    return kid if isinstance(kid, str) else ""
