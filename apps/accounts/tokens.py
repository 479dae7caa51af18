"""JWT tokens of the service: RS256 with a ``kid`` header, a role claim, and
refresh-token revocation in our own ``RevokedToken`` table (DESIGN 4)."""

from functools import cache

import jwt
from django.conf import settings
from django.db import IntegrityError, transaction
from rest_framework_simplejwt import tokens
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.utils import datetime_from_epoch

from apps.accounts.models import RevokedToken


class KeyedTokenBackend(TokenBackend):
    """Signs with the key's RFC 7638 thumbprint as ``kid``, so verifiers that read
    the JWKS (the warehouse) can pick the right key when keys are rotated."""

    def encode(self, payload):
        return jwt.encode(
            payload,
            self.prepared_signing_key,
            algorithm=self.algorithm,
            headers={"kid": settings.JWT_PUBLIC_JWK["kid"]},
        )


def sign(payload: dict) -> str:
    """A JWT of ``payload`` signed with the service's key, ``kid`` in its header:
    what the warehouse verifies with the JWKS (download links)."""
    return token_backend().encode(payload)


@cache
def token_backend() -> KeyedTokenBackend:
    return KeyedTokenBackend(
        api_settings.ALGORITHM,
        api_settings.SIGNING_KEY,
        api_settings.VERIFYING_KEY,
        leeway=api_settings.LEEWAY,
    )


class _Keyed:
    def get_token_backend(self):
        return token_backend()


class AccessToken(_Keyed, tokens.AccessToken):
    pass


class RefreshToken(_Keyed, tokens.RefreshToken):
    access_token_class = AccessToken

    @classmethod
    def for_user(cls, user):
        token = super().for_user(user)
        # The role travels in both tokens; the access token copies it. The API
        # itself authorises on the database row, the warehouse on this claim.
        token["role"] = user.role
        return token

    def verify(self, *args, **kwargs):
        super().verify(*args, **kwargs)
        if RevokedToken.objects.filter(jti=self[api_settings.JTI_CLAIM]).exists():
            raise TokenError("Token has been revoked")

    def revoke(self, reason: str) -> None:
        """Revoke this refresh token; raises TokenError if it already was.

        The insert is the check: two requests racing with the same token cannot
        both succeed, whatever the database (the jti is unique).
        """
        try:
            # The savepoint keeps an enclosing transaction usable after a refusal.
            with transaction.atomic():
                RevokedToken.objects.create(
                    jti=self[api_settings.JTI_CLAIM],
                    user_id=self.get(api_settings.USER_ID_CLAIM),
                    expires_at=datetime_from_epoch(self["exp"]),
                    reason=reason,
                )
        except IntegrityError as exc:
            raise TokenError("Token has been revoked") from exc


class UntypedToken(_Keyed, tokens.UntypedToken):
    pass
