"""Token lifetimes, rotation, revocation and refusal of forged tokens."""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import jwt
import time_machine
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.core.cache import cache
from django.test import TestCase
from django.urls import reverse

from apps.accounts.models import RevokedToken, Role
from apps.accounts.testing import PASSWORD, make_user
from imager_site.keys import public_pem

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenTestCase(TestCase):
    def setUp(self):
        cache.clear()  # the obtain throttle counts in the cache
        self.user = make_user(Role.CLIENT, "carol")

    def obtain(self, username="carol", password=PASSWORD):
        return self.client.post(
            reverse("v1:token-obtain"),
            {"username": username, "password": password},
            content_type="application/json",
        )

    def me(self, access):
        return self.client.get(
            reverse("v1:user-me"), HTTP_AUTHORIZATION=f"Bearer {access}"
        )

    def refresh(self, refresh):
        return self.client.post(
            reverse("v1:token-refresh"),
            {"refresh": refresh},
            content_type="application/json",
        )


class LifetimeTests(TokenTestCase):
    def test_obtain_returns_rs256_tokens_with_the_role_and_the_key_id(self):
        response = self.obtain()
        self.assertEqual(response.status_code, 200, response.content)
        body = response.json()
        header = jwt.get_unverified_header(body["access"])
        self.assertEqual(header["alg"], "RS256")
        self.assertEqual(header["kid"], settings.JWT_PUBLIC_JWK["kid"])
        claims = jwt.decode(body["access"], options={"verify_signature": False})
        self.assertEqual(claims["role"], "client")
        self.assertEqual(claims["user_id"], str(self.user.pk))
        self.assertEqual(body["role"], "client")

    def test_access_token_lives_exactly_60_minutes(self):
        with time_machine.travel(START, tick=False) as clock:
            access = self.obtain().json()["access"]
            claims = jwt.decode(access, options={"verify_signature": False})
            self.assertEqual(claims["exp"] - claims["iat"], 60 * 60)
            clock.shift(timedelta(minutes=59, seconds=59))
            self.assertEqual(self.me(access).status_code, 200)
            clock.shift(timedelta(seconds=1))
            response = self.me(access)
            self.assertEqual(response.status_code, 401)
            self.assertEqual(response.json()["code"], "token_not_valid")

    def test_refresh_token_lives_exactly_30_days(self):
        with time_machine.travel(START, tick=False) as clock:
            first = self.obtain().json()["refresh"]
            second = self.obtain().json()["refresh"]
            claims = jwt.decode(first, options={"verify_signature": False})
            self.assertEqual(claims["exp"] - claims["iat"], 30 * 24 * 60 * 60)
            clock.shift(timedelta(days=29, hours=23, minutes=59, seconds=59))
            self.assertEqual(self.refresh(first).status_code, 200)
            clock.shift(timedelta(seconds=1))
            self.assertEqual(self.refresh(second).status_code, 401)

    def test_a_new_access_token_from_refresh_works_after_the_old_one_expired(self):
        with time_machine.travel(START, tick=False) as clock:
            pair = self.obtain().json()
            clock.shift(timedelta(minutes=90))
            self.assertEqual(self.me(pair["access"]).status_code, 401)
            renewed = self.refresh(pair["refresh"]).json()
            self.assertEqual(self.me(renewed["access"]).status_code, 200)


class RotationTests(TokenTestCase):
    def test_refresh_rotates_and_revokes_the_old_refresh_token(self):
        old = self.obtain().json()["refresh"]
        response = self.refresh(old)
        self.assertEqual(response.status_code, 200)
        new = response.json()["refresh"]
        self.assertNotEqual(new, old)
        jti = jwt.decode(old, options={"verify_signature": False})["jti"]
        revoked = RevokedToken.objects.get(jti=jti)
        self.assertEqual(revoked.reason, "rotated")
        self.assertEqual(revoked.user_id, self.user.pk)

    def test_a_reused_refresh_token_is_refused(self):
        old = self.obtain().json()["refresh"]
        self.assertEqual(self.refresh(old).status_code, 200)
        again = self.refresh(old)
        self.assertEqual(again.status_code, 401)
        self.assertIn("revoked", json.dumps(again.json()))
        self.assertEqual(RevokedToken.objects.count(), 1)

    def test_logout_revokes_the_refresh_token(self):
        pair = self.obtain().json()
        response = self.client.post(
            reverse("v1:logout"), {"refresh": pair["refresh"]}, "application/json"
        )
        self.assertEqual(response.status_code, 204)
        self.assertEqual(RevokedToken.objects.get().reason, "logout")
        self.assertEqual(self.refresh(pair["refresh"]).status_code, 401)

    def test_verify_accepts_a_live_token_and_refuses_a_revoked_refresh_token(self):
        pair = self.obtain().json()
        url = reverse("v1:token-verify")
        ok = self.client.post(url, {"token": pair["access"]}, "application/json")
        self.assertEqual(ok.status_code, 200)
        self.refresh(pair["refresh"])
        refused = self.client.post(url, {"token": pair["refresh"]}, "application/json")
        self.assertEqual(refused.status_code, 401)

    def test_an_access_token_is_not_accepted_as_a_refresh_token(self):
        access = self.obtain().json()["access"]
        self.assertEqual(self.refresh(access).status_code, 401)
        self.assertEqual(RevokedToken.objects.count(), 0)

    def test_a_disabled_account_loses_access_and_refresh_at_once(self):
        pair = self.obtain().json()
        self.user.is_active = False
        self.user.save()
        self.assertEqual(self.me(pair["access"]).status_code, 401)
        self.assertEqual(self.refresh(pair["refresh"]).status_code, 401)


class ForgedTokenTests(TokenTestCase):
    def claims(self, **extra):
        now = int(datetime.now(UTC).timestamp())
        return {
            "token_type": "access",
            "exp": now + 600,
            "iat": now,
            "jti": "f" * 32,
            "user_id": str(self.user.pk),
            "role": "admin",
            **extra,
        }

    def test_a_token_signed_with_another_key_is_refused(self):
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = jwt.encode(self.claims(), other, algorithm="RS256")
        self.assertEqual(self.me(token).status_code, 401)

    def test_an_unsigned_alg_none_token_is_refused(self):
        header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        payload = b64(json.dumps(self.claims()).encode())
        self.assertEqual(self.me(f"{header}.{payload}.").status_code, 401)

    def test_an_hs256_token_keyed_with_the_public_key_is_refused(self):
        # The classic key-confusion attack: HMAC with the public PEM as secret.
        secret = public_pem(settings.JWT_PRIVATE_KEY).encode()
        header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = b64(json.dumps(self.claims()).encode())
        signing_input = f"{header}.{payload}".encode()
        signature = b64(hmac.new(secret, signing_input, hashlib.sha256).digest())
        self.assertEqual(self.me(f"{header}.{payload}.{signature}").status_code, 401)

    def test_an_expired_token_with_a_valid_signature_is_refused(self):
        now = int(datetime.now(UTC).timestamp())
        token = jwt.encode(
            self.claims(exp=now - 1, iat=now - 3601),
            settings.JWT_PRIVATE_KEY,
            algorithm="RS256",
        )
        self.assertEqual(self.me(token).status_code, 401)

    def test_a_tampered_payload_is_refused(self):
        access = self.obtain().json()["access"]
        header, _, signature = access.split(".")
        payload = b64(json.dumps(self.claims()).encode())
        self.assertEqual(self.me(f"{header}.{payload}.{signature}").status_code, 401)

    def test_the_jwks_key_verifies_issued_tokens(self):
        jwks = self.client.get(reverse("v1:jwks")).json()
        self.assertEqual(len(jwks["keys"]), 1)
        key = jwt.PyJWK(jwks["keys"][0])
        access = self.obtain().json()["access"]
        claims = jwt.decode(access, key.key, algorithms=["RS256"])
        self.assertEqual(claims["user_id"], str(self.user.pk))
        self.assertNotIn("d", jwks["keys"][0])  # never the private part
        pem = key.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        self.assertEqual(pem, public_pem(settings.JWT_PRIVATE_KEY))


class RevocationRaceTests(TokenTestCase):
    def test_only_one_of_two_revocations_of_the_same_token_succeeds(self):
        # Both requests passed the "not revoked yet" check; the unique jti must
        # still let only one of them rotate the token, on every backend.
        from rest_framework_simplejwt.exceptions import TokenError

        from apps.accounts.tokens import RefreshToken

        raw = self.obtain().json()["refresh"]
        first, second = RefreshToken(raw), RefreshToken(raw)
        first.revoke(reason="rotated")
        with self.assertRaises(TokenError):
            second.revoke(reason="rotated")
        self.assertEqual(RevokedToken.objects.count(), 1)
