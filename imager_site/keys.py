"""Secrets of the embedded default: created once in the data folder, then reused.

Production sets ``SECRET_KEY`` and ``JWT_PRIVATE_KEY_FILE`` (or ``JWT_PRIVATE_KEY``);
with DEBUG off nothing is generated, so a forgotten secret is an error, not a silent
development key.
"""

import base64
import contextlib
import hashlib
import json
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def _write_private(path: Path, data: bytes) -> None:
    # Created with 0600 from the start: the key is never readable by others,
    # not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def development_secret_key(data_dir: Path) -> str:
    path = data_dir / "secret_key"
    if not path.exists():
        # Another process may create it first; then we read theirs.
        with contextlib.suppress(FileExistsError):
            _write_private(path, secrets.token_urlsafe(50).encode())
    return path.read_text().strip()


def development_private_key(data_dir: Path) -> str:
    path = data_dir / "jwt_private.pem"
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with contextlib.suppress(FileExistsError):
            _write_private(path, pem)
    return path.read_text()


def load_private_key(pem: str):
    """Parse a PEM RSA private key; raises ValueError with a readable reason."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a readable unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the key is not an RSA key (RS256 needs RSA)")
    if key.key_size < 2048:
        raise ValueError(f"the RSA key has {key.key_size} bits; use 2048 or more")
    return key


def public_pem(private_key) -> str:
    return (
        private_key.public_key()
        .public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        .decode()
    )


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(private_key) -> dict:
    """The public key as a JWK with its RFC 7638 thumbprint as ``kid``."""
    numbers = private_key.public_key().public_numbers()
    members = {"e": _b64(numbers.e), "kty": "RSA", "n": _b64(numbers.n)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest())
    return {**members, "kid": kid.rstrip(b"=").decode(), "use": "sig", "alg": "RS256"}
