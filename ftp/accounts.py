"""What only the API knows about a user: is the account still enabled, which
orders does a creator build, what did it declare.

Logins never wait for these answers. A token with a valid signature is admitted
at once; the account is then checked in the background with the user's own token
(``GET /api/v1/users/me/``, 401 once the account is disabled). The answer is
cached per user for ``ttl`` seconds and re-checked while the user has sessions.
A disabled account's sessions are closed and its next logins refused; a user
name or role that does not match the account closes the sessions that used it.
"""

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from workers.common.api import ApiError, token_expiry
from workers.common.names import Role, TaskKind

log = logging.getLogger(__name__)

OK = "ok"
DENIED = "denied"
UNKNOWN = "unknown"
# Tokens this close to expiry are not used for checks: a 401 would then say
# nothing about the account.
TOKEN_MARGIN = 30
# An order just found missing from a creator's tasks is not asked about again
# for this long, so a burst of refused uploads does not hammer the API.
REFETCH_AFTER = 2.0
DISABLED = (
    "the API refuses this account's tokens (disabled or deleted); ask an administrator"
)


class Unavailable(Exception):
    """The API did not answer a question a command depends on."""


class Denied(Exception):
    """The API refused the user's token: the account is disabled."""


@dataclass
class Account:
    user_id: str
    state: str = UNKNOWN
    username: str = ""
    role: str = ""
    reason: str = ""
    checked_at: float = float("-inf")
    checking: bool = False
    orders: dict[str, str] | None = None  # order id -> create task id
    orders_at: float = float("-inf")
    misses: dict[str, float] = field(default_factory=dict)  # order -> when
    sessions: set = field(default_factory=set)


class Accounts:
    def __init__(
        self,
        api,
        *,
        ttl: float = 60.0,
        orders_ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        pool_size: int = 4,
    ):
        self.api = api
        self.ttl = ttl
        self.orders_ttl = orders_ttl
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._accounts: dict[str, Account] = {}
        self._pool = ThreadPoolExecutor(pool_size, thread_name_prefix="account")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _account(self, user_id: str) -> Account:
        account = self._accounts.get(user_id)
        if account is None:
            account = self._accounts[user_id] = Account(user_id)
        return account

    def state(self, user_id: str) -> str:
        with self._lock:
            account = self._accounts.get(user_id)
            return account.state if account else UNKNOWN

    # --- logins ------------------------------------------------------------------

    def admit(self, claims, token: str, username: str) -> str:
        """Why this login is refused ("" when admitted), from cached knowledge
        only. Schedules a background check when the cache is stale."""
        now = self._clock()
        with self._lock:
            account = self._account(claims.user_id)
            refusal = ""
            if account.state == DENIED:
                refusal = account.reason
            elif account.state == OK:
                if account.role != claims.role:
                    refusal = (
                        f"this account's role is now {account.role}; "
                        "log in with a fresh token"
                    )
                elif account.username != username:
                    refusal = "the user name does not match the token's account"
            stale = now - account.checked_at >= self.ttl
            if stale:
                self._schedule(account, token)
        return refusal

    def register(self, session) -> None:
        with self._lock:
            self._account(session.user_id).sessions.add(session)

    def unregister(self, session) -> None:
        with self._lock:
            account = self._accounts.get(session.user_id)
            if account is not None:
                account.sessions.discard(session)

    def recheck(self) -> int:
        """Schedule checks of users with sessions whose answer is stale, with
        the freshest of their tokens. Returns how many were scheduled."""
        now = self._clock()
        wall = self._wall()
        count = 0
        with self._lock:
            for account in self._accounts.values():
                if not account.sessions or now - account.checked_at < self.ttl:
                    continue
                best = max(account.sessions, key=lambda s: s.exp)
                if best.exp - wall > TOKEN_MARGIN and self._schedule(
                    account, best.token
                ):
                    count += 1
        return count

    def _schedule(self, account: Account, token: str) -> bool:
        """Queue a check (lock held). False if one is already queued."""
        if account.checking:
            return False
        account.checking = True
        try:
            self._pool.submit(self.check, account.user_id, token)
        except RuntimeError:  # shut down
            account.checking = False
            return False
        return True

    def _refused(self, user_id: str, token: str) -> bool:
        """The API answered 401 to ``token``: deny the account, unless the token
        is about to expire (then clocks may disagree; the account may be fine)."""
        try:
            fresh = token_expiry(token) - self._wall() > TOKEN_MARGIN
        except ApiError:
            fresh = False
        if fresh:
            self._deny(user_id, DISABLED)
        return fresh

    def check(self, user_id: str, token: str) -> str:
        """Ask the API about the account behind ``token``; returns the state."""
        try:
            try:
                me = self.api.request_as(token, "GET", "api/v1/users/me/")
            except ApiError as exc:
                if exc.status == 401 and self._refused(user_id, token):
                    return DENIED
                log.warning("cannot check account %s: %s", user_id, exc)
                return self.state(user_id)
            orders = None
            if me.get("role") == Role.CREATOR:
                try:
                    orders = self._fetch_orders(user_id, token)
                except (Unavailable, Denied):
                    orders = None
            self._accept(user_id, me, orders)
            return OK
        finally:
            with self._lock:
                self._account(user_id).checking = False

    def _accept(self, user_id: str, me: dict, orders) -> None:
        now = self._clock()
        username, role = str(me.get("username", "")), str(me.get("role", ""))
        with self._lock:
            account = self._account(user_id)
            account.state, account.reason = OK, ""
            account.username, account.role = username, role
            account.checked_at = now
            if orders is not None:
                account.orders, account.orders_at = orders, now
            sessions = list(account.sessions)
        for session in sessions:
            if session.username != username:
                session.kick("the user name does not match the token's account")
            elif session.role != role:
                session.kick(f"this account's role is now {role}")

    def _deny(self, user_id: str, reason: str) -> None:
        with self._lock:
            account = self._account(user_id)
            account.state, account.reason = DENIED, reason
            account.checked_at = self._clock()
            account.orders = None
            sessions = list(account.sessions)
        for session in sessions:
            session.kick(reason)

    # --- creators ----------------------------------------------------------------

    def _fetch_orders(self, user_id: str, token: str) -> dict[str, str]:
        try:
            body = self.api.request_as(
                token,
                "GET",
                "api/v1/tasks/",
                params={"kind": TaskKind.CREATE, "limit": 1000},
            )
        except ApiError as exc:
            if exc.status == 401 and self._refused(user_id, token):
                raise Denied(DISABLED) from exc
            if exc.status == 403:
                return {}  # not a worker account: it holds nothing
            raise Unavailable(f"the API could not list your tasks ({exc})") from exc
        items = body.get("results", []) if isinstance(body, dict) else body or []
        return {str(item["order"]): str(item["id"]) for item in items}

    def holds(self, user_id: str, token: str, order_id: str) -> bool:
        """Whether the creator holds the create task of ``order_id``: cached for
        ``orders_ttl`` seconds, else asked with the creator's own token."""
        now = self._clock()
        with self._lock:
            account = self._account(user_id)
            orders, age = account.orders, now - account.orders_at
            missed = now - account.misses.get(order_id, float("-inf"))
        if orders is not None and order_id in orders and age < self.orders_ttl:
            return True
        if missed < REFETCH_AFTER:
            return False
        orders = self._fetch_orders(user_id, token)
        now = self._clock()
        with self._lock:
            account = self._account(user_id)
            account.orders, account.orders_at = orders, now
            account.misses = {
                order: when
                for order, when in account.misses.items()
                if now - when < REFETCH_AFTER
            }
            if order_id not in orders:
                account.misses[order_id] = now
        return order_id in orders

    def task_of(self, user_id: str, order_id: str) -> str:
        with self._lock:
            orders = self._account(user_id).orders or {}
            return orders.get(order_id, "")

    def declared(self, user_id: str, token: str, order_id: str) -> dict | None:
        """The image the creator declared for ``order_id`` (name, size, bmap
        name and size), or None when it has declared nothing yet."""
        task = self.task_of(user_id, order_id)
        if not task:
            return None
        try:
            return self.api.request_as(
                token, "GET", f"api/v1/tasks/{task}/download-info/"
            )
        except ApiError as exc:
            if exc.status == 400:
                return None  # "This task has no image yet."
            if exc.status == 401 and self._refused(user_id, token):
                raise Denied(DISABLED) from exc
            if exc.status == 404:
                return None  # the task is no longer held
            raise Unavailable(
                f"the API could not say what you declared ({exc})"
            ) from exc
