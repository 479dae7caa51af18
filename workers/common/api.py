"""The one HTTP client of the workers, the warehouse and the host tool.

It logs in with a username and password, keeps the access token fresh (refreshing
a minute before it expires, logging in again if the refresh token is gone), retries
what is worth retrying (connection errors, 502/503/504, 429 after Retry-After) and
turns every other answer into an ``ApiError`` whose message says what the API said.
No Django here: these processes are thin clients of the API (DESIGN 2).
"""

import base64
import json
import logging
import threading
import time
from urllib.parse import urljoin

import requests

log = logging.getLogger(__name__)

RETRY_STATUSES = {502, 503, 504}
# Refresh this long before the access token expires, so no request carries a
# token that dies on the way.
REFRESH_MARGIN = 60


class ApiError(Exception):
    """The API refused a request; ``status`` is the HTTP status (0: unreachable)."""

    def __init__(self, status: int, message: str, code: str = "", body=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body


class LeaseLost(ApiError):
    """409 from a lease endpoint: another worker may hold the task now. Stop."""


def _claims(token: str) -> dict:
    """A JWT's claims, read without checking the signature (the API checks it;
    we only need to know when to refresh)."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
        float(claims["exp"])
        return claims
    except (IndexError, ValueError, KeyError, TypeError) as exc:
        raise ApiError(
            0, f"the API returned a token that is not a JWT ({exc})"
        ) from exc


def token_expiry(token: str) -> float:
    """The ``exp`` claim of a JWT: a time by the API's clock."""
    return float(_claims(token)["exp"])


def token_lifetime(token: str) -> float:
    """Seconds a token just received stays valid: ``exp - iat``, both by the
    API's clock, so this machine's clock (an hour off, say) plays no part."""
    claims = _claims(token)
    if "iat" not in claims:
        return float(claims["exp"]) - time.time()  # the best we can do
    return float(claims["exp"]) - float(claims["iat"])


def describe(body) -> str:
    """One line from a DRF error body: ``detail`` or ``field: message`` pairs."""
    if isinstance(body, dict):
        if "detail" in body:
            return str(body["detail"])
        parts = []
        for field, messages in body.items():
            if isinstance(messages, list):
                messages = " ".join(str(m) for m in messages)
            parts.append(f"{field}: {messages}")
        return "; ".join(parts)
    if isinstance(body, list):
        return " ".join(str(item) for item in body)
    return str(body)[:300]


class ApiClient:
    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        *,
        timeout: float = 30,
        retries: int = 5,
        backoff: float = 1.0,
        user_agent: str = "imager-client",
    ):
        if not url.startswith(("http://", "https://")):
            raise ValueError(
                f"API URL must start with http:// or https://, got {url!r}"
            )
        self.base = url.rstrip("/") + "/"
        self.username = username
        self._password = password
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent
        self._lock = threading.Lock()
        self._access = ""
        self._refresh = ""
        self._access_expires = 0.0

    # --- tokens -------------------------------------------------------------------

    def login(self) -> None:
        body = self._send(
            "POST",
            "api/v1/auth/token/",
            json={"username": self.username, "password": self._password},
            auth=False,
        )
        self._store(body)

    def _store(self, body: dict) -> None:
        self._access = body["access"]
        self._refresh = body["refresh"]
        # When to refresh, on this machine's monotonic clock: comparing the
        # API's ``exp`` with our wall clock would refresh at every request on
        # a clock that is ahead, and send expired tokens (the warehouse's FTP
        # password) from one that is behind.
        self._access_expires = time.monotonic() + token_lifetime(self._access)

    def _renew_tokens(self) -> None:
        if self._refresh:
            try:
                body = self._send(
                    "POST",
                    "api/v1/auth/token/refresh/",
                    json={"refresh": self._refresh},
                    auth=False,
                )
                self._store(body)
                return
            except ApiError as exc:
                if exc.status != 401:
                    raise
                log.info("refresh token refused (%s); logging in again", exc)
        self.login()

    @property
    def access_token(self) -> str:
        """A valid access token (also the warehouse's FTP password)."""
        with self._lock:
            if time.monotonic() > self._access_expires - REFRESH_MARGIN:
                self._renew_tokens()
            return self._access

    def logout(self) -> None:
        with self._lock:
            if self._refresh:
                try:
                    self._send(
                        "POST",
                        "api/v1/auth/logout/",
                        json={"refresh": self._refresh},
                        auth=False,
                    )
                finally:
                    self._access = self._refresh = ""
                    self._access_expires = 0.0

    # --- requests -----------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs):
        """Send an authenticated request; returns the decoded JSON (None if empty)."""
        try:
            return self._send(method, path, token=self.access_token, **kwargs)
        except ApiError as exc:
            if exc.status != 401:
                raise
        # The token was refused although fresh (keys rotated, clock skew): renew once.
        with self._lock:
            self._renew_tokens()
            token = self._access
        return self._send(method, path, token=token, **kwargs)

    def request_as(self, token: str, method: str, path: str, **kwargs):
        """Send a request with someone else's access token: the warehouse asks
        the API what a user may do with that user's own token. No renewal."""
        return self._send(method, path, token=token, **kwargs)

    def download(self, path: str, target) -> int:
        """Stream a file answer to ``target``; returns its size."""
        url = urljoin(self.base, path.lstrip("/"))
        headers = {"Authorization": f"Bearer {self.access_token}"}
        try:
            with self.session.get(
                url, headers=headers, timeout=self.timeout, stream=True
            ) as response:
                if not response.ok:
                    self._decode(response, "GET", path)
                size = 0
                with open(target, "wb") as handle:
                    for chunk in response.iter_content(1024 * 1024):
                        handle.write(chunk)
                        size += len(chunk)
                return size
        except requests.RequestException as exc:
            raise ApiError(0, f"cannot reach the API at {url}: {exc}") from exc

    def get(self, path: str, **params):
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: dict | None = None):
        return self.request("POST", path, json=body or {})

    def _send(self, method, path, *, token=None, auth=True, **kwargs):
        url = urljoin(self.base, path.lstrip("/"))
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        delay = self.backoff
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self.session.request(
                    method, url, headers=headers, timeout=self.timeout, **kwargs
                )
            except requests.RequestException as exc:
                if last:
                    raise ApiError(0, f"cannot reach the API at {url}: {exc}") from exc
                log.warning("API unreachable (%s); retrying in %.0f s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30)
                continue
            if response.status_code in RETRY_STATUSES and not last:
                log.warning("API answered %s; retrying", response.status_code)
                time.sleep(delay)
                delay = min(delay * 2, 30)
                continue
            if response.status_code == 429 and not last:
                wait = float(response.headers.get("Retry-After") or delay)
                log.warning("API throttled us; waiting %.0f s", wait)
                time.sleep(min(wait, 120))
                continue
            return self._decode(response, method, path)
        raise AssertionError("unreachable")  # the loop returns or raises

    @staticmethod
    def _decode(response, method, path):
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = response.text
        if response.ok:
            return body
        code = body.get("code", "") if isinstance(body, dict) else ""
        message = f"{method} {path}: {response.status_code} {describe(body)}"
        stop = response.status_code == 409 and code in {"lease_lost", "canceled"}
        error = LeaseLost if stop else ApiError
        raise error(response.status_code, message, code=code, body=body)
