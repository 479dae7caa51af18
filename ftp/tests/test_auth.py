"""Access tokens checked with a JWKS: real RS256 signatures made here with real
keys, and the forgeries that must fail."""

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from ftp.auth import KeySet, TokenRefused, parse_jwks, verify_link, verify_token

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KID = "key-1"


def jwk(key, kid=KID) -> dict:
    return {
        **json.loads(RSAAlgorithm.to_jwk(key.public_key())),
        "kid": kid,
        "alg": "RS256",
        "use": "sig",
    }


KEYS = parse_jwks({"keys": [jwk(KEY)]})


def claims(**changes) -> dict:
    now = int(time.time())
    values = {
        "token_type": "access",
        "exp": now + 3600,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "user_id": str(uuid.uuid4()),
        "role": "creator",
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def sign(payload, key=KEY, kid=KID, algorithm="RS256") -> str:
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_valid_access_token_gives_its_user_and_role():
    payload = claims(role="downloader")
    verified = verify_token(sign(payload), KEYS)
    assert (verified.user_id, verified.role, verified.exp) == (
        payload["user_id"],
        "downloader",
        payload["exp"],
    )


def hs256_with_public_key() -> str:
    pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = b64(json.dumps({"alg": "HS256", "kid": KID}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def swapped_payload() -> str:
    head, _body, signature = sign(claims(role="downloader")).split(".")
    return f"{head}.{b64(json.dumps(claims(role='admin')).encode())}.{signature}"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-a-token", "not a JWT"),
        ("", "not a JWT"),
        (sign(claims(exp=int(time.time()) - 5)), "expired"),
        (sign(claims(), key=OTHER_KEY), "signature"),
        (sign(claims(), key=OTHER_KEY, kid="rogue"), "unknown"),
        (jwt.encode(claims(), None, algorithm="none", headers={"kid": KID}), "RS256"),
        (hs256_with_public_key(), "RS256"),
        (swapped_payload(), "signature"),
        (sign(claims(token_type="refresh")), "not an access token"),
        (sign(claims(role="emperor")), "no known role"),
        (sign(claims(role=None)), "no known role"),
        (sign(claims(user_id="42")), "UUID"),
        (sign(claims(jti=None)), "jti"),
        (sign(claims(exp=None)), "exp"),
    ],
)
def test_bad_expired_and_forged_tokens_are_refused_with_a_reason(token, reason):
    with pytest.raises(TokenRefused, match=reason):
        verify_token(token, KEYS)


def test_the_jwks_keeps_only_rs256_signing_keys():
    document = {
        "keys": [
            jwk(KEY),
            {**jwk(OTHER_KEY, "enc-key"), "use": "enc"},
            {**jwk(OTHER_KEY, "hs"), "alg": "HS256"},
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
            {**jwk(OTHER_KEY, "")},
        ]
    }
    assert list(parse_jwks(document)) == [KID]


def test_a_token_with_an_unknown_key_asks_for_a_refresh_at_a_limited_rate():
    now = [1000.0]
    served = [{"keys": [jwk(KEY)]}]
    keys = KeySet(lambda: served[0], min_interval=30, clock=lambda: now[0])
    assert keys.refresh() == 1
    rotated = sign(claims(), key=OTHER_KEY, kid="key-2")
    with pytest.raises(TokenRefused):
        keys.verify(rotated)
    assert keys.wanted.is_set()
    assert not keys.due()  # refreshed a moment ago
    now[0] += 30
    assert keys.due()
    served[0] = {"keys": [jwk(KEY), jwk(OTHER_KEY, "key-2")]}
    keys.refresh()
    assert keys.verify(rotated).role == "creator"


def test_a_bad_signature_under_a_known_key_asks_for_no_refresh():
    keys = KeySet(lambda: {"keys": [jwk(KEY)]})
    keys.refresh()
    with pytest.raises(TokenRefused):
        keys.verify(sign(claims(), key=OTHER_KEY))
    assert not keys.wanted.is_set()


def test_a_jwks_without_usable_keys_is_an_error():
    keys = KeySet(lambda: {"keys": []})
    with pytest.raises(ValueError, match="no RS256"):
        keys.refresh()


# --- download links -------------------------------------------------------------

ORDER = str(uuid.uuid4())


def link_claims(**changes) -> dict:
    now = int(time.time())
    values = {
        "token_type": "download",
        "aud": "imager-download",
        "order": ORDER,
        "files": ["image.img", "image.bmap"],
        "user_id": str(uuid.uuid4()),
        "exp": now + 3600,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def test_a_link_gives_its_order_files_and_who_asked():
    payload = link_claims()
    link = verify_link(sign(payload), KEYS)
    assert (link.order, link.files, link.user_id, link.jti) == (
        ORDER,
        {"image.img", "image.bmap"},
        payload["user_id"],
        payload["jti"],
    )


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-a-token", "not a JWT"),
        (sign(link_claims(), key=OTHER_KEY), "signature"),
        (sign(link_claims(), key=OTHER_KEY, kid="rogue"), "unknown"),
        (
            jwt.encode(link_claims(), None, algorithm="none", headers={"kid": KID}),
            "RS256",
        ),
        (sign(link_claims(token_type="access")), "not a download link"),
        (sign(link_claims(aud="someone-else")), "(?i)audience"),
        (sign(link_claims(aud=None)), "aud"),
        (sign(link_claims(order="../etc")), "no order"),
        (sign(link_claims(files=[])), "no image file"),
        (sign(link_claims(files=["../../.warehouse/x.img"])), "no image file"),
        (sign(link_claims(files="image.img")), "no image file"),
        (sign(link_claims(files=["image.img.part"])), "no image file"),
        (sign(link_claims(exp=None)), "exp"),
        (sign(claims()), "aud"),  # an access token is no link
    ],
)
def test_forged_and_foreign_link_tokens_are_refused(token, reason):
    with pytest.raises(TokenRefused, match=reason) as refused:
        verify_link(token, KEYS)
    assert not refused.value.expired


def test_an_expired_link_says_so_past_a_minute_of_leeway():
    late = sign(link_claims(exp=int(time.time()) - 30))
    assert verify_link(late, KEYS).order == ORDER  # clocks differ a little
    with pytest.raises(TokenRefused, match="expired") as refused:
        verify_link(sign(link_claims(exp=int(time.time()) - 120)), KEYS)
    assert refused.value.expired


def test_a_link_token_is_no_access_token():
    with pytest.raises(TokenRefused):
        verify_token(sign({**claims(), "aud": "imager-download"}), KEYS)
    with pytest.raises(TokenRefused):
        verify_token(sign(link_claims()), KEYS)
