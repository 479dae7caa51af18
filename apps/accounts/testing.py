"""Helpers for tests of every app: accounts of a role and their tokens."""

from django.contrib.auth import get_user_model

from apps.accounts.tokens import RefreshToken

PASSWORD = "correct-horse-battery-staple"  # noqa: S105 - test accounts only


def make_user(role: str, username: str | None = None, **fields):
    return get_user_model().objects.create_user(
        username=username or f"{role}-user", password=PASSWORD, role=role, **fields
    )


def bearer(user) -> dict:
    """Headers for the test client: an access token of ``user``."""
    token = RefreshToken.for_user(user).access_token
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}
