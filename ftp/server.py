"""pyftpdlib glue: an authorizer per session, a file system view of the storage
root, and a handler that turns FTP commands into calls of the plain modules.

Concurrency: pyftpdlib's threaded server (one thread per control connection,
each with its own I/O loop), so a command that asks the API (a creator's first
upload into an order) blocks only its own session, and hashing runs in parallel
(hashlib releases the GIL on large buffers).
"""

import logging
import os
import threading
import time

from pyftpdlib.exceptions import AuthenticationFailed
from pyftpdlib.filesystems import AbstractedFS, FilesystemError
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.log import logger as pyftpdlib_logger
from pyftpdlib.servers import ThreadedFTPServer

from ftp import audit, paths, policy, uploads
from ftp.accounts import Denied, Unavailable
from ftp.auth import TokenRefused
from ftp.receiving import dtp_class

log = logging.getLogger(__name__)

WATCH_EVERY = 0.5
# Commands a session may still send once its token expired or it was closed.
EXEMPT = {"QUIT", "NOOP", "USER", "PASS", "REIN", "HELP", "FEAT", "SYST", "ABOR"}
# Not offered: STOU picks names the API cannot know; modes are the server's.
DISABLED_COMMANDS = {"STOU", "SITE CHMOD"}
NOT_ENOUGH = "550 Not enough privileges."


class Session:
    """Who is logged in on one control connection, from the token's claims."""

    def __init__(self, username: str, claims, token: str, ip: str):
        self.username = username
        self.user_id = claims.user_id
        self.role = claims.role
        self.exp = claims.exp
        self.token = token
        self.ip = ip
        self.kicked = ""

    def kick(self, reason: str) -> None:
        """Close this session soon (called from other threads)."""
        self.kicked = reason


class SessionAuthorizer:
    """pyftpdlib's authorizer interface, answered by the session's handler."""

    def __init__(self, handler):
        self.handler = handler

    def validate_authentication(self, username, password, handler):
        self.handler.login(username, password)

    def get_home_dir(self, username):
        return self.handler.services.storage.root

    def has_perm(self, username, perm, path=None):
        return self.handler.permitted(perm, path)

    def get_perms(self, username):
        session = self.handler.session
        return policy.LETTERS.get(session.role, "") if session else ""

    def get_msg_login(self, username):
        return f"Welcome {username} ({self.handler.session.role})."

    def get_msg_quit(self, username):
        return "Goodbye."

    def impersonate_user(self, username, password):
        pass  # one system user serves everyone

    def terminate_impersonation(self, username):
        pass


class WarehouseFS(AbstractedFS):
    """The storage root as ``/``, with the path rules of ``ftp.paths``."""

    def ftpnorm(self, ftppath):
        return paths.normalize(self.cwd, ftppath)

    def validpath(self, path):
        return paths.within(self.root, path)

    def chdir(self, path):
        # pyftpdlib calls os.chdir here, which is process-wide: wrong with threads.
        if not os.path.isdir(path):
            raise FilesystemError("Not a directory")
        self.cwd = self.fs2ftp(path)

    def listdir(self, path):
        names = os.listdir(path)
        session = self.cmd_channel.session if self.cmd_channel else None
        role = session.role if session else ""
        where = paths.classify(self.fs2ftp(path))
        if where.kind is paths.Kind.ROOT:
            hidden = {paths.INTERNAL}
            if role not in policy.ADMINS:
                hidden.add(paths.QUARANTINE)
            names = [n for n in names if n not in hidden]
        if role in policy.READERS:
            names = [n for n in names if not n.endswith(paths.PART)]
        return names

    def open(self, filename, mode):
        if mode != "rb":
            raise FilesystemError("Files are written by the upload commands only")
        return open(filename, "rb", opener=_no_follow)


def _no_follow(path, flags):
    # The root's symlinks were checked by validpath; the file itself must not be one.
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))


class WarehouseMixin:
    """The warehouse's behaviour on top of pyftpdlib's (plain or TLS) handler."""

    services = None  # the Warehouse, set on the class built by handler_class()

    def __init__(self, conn, server, ioloop=None):
        self.session = None
        self.upload = None
        self._refusal, self._refusal_code = "", "550"
        self._watch = None
        self.authorizer = SessionAuthorizer(self)
        super().__init__(conn, server, ioloop)

    # --- login -------------------------------------------------------------------

    def login(self, username: str, token: str) -> None:
        """Check the token locally; raise AuthenticationFailed (530) if refused."""
        services = self.services
        try:
            claims = services.keys.verify(token)
        except TokenRefused as exc:
            self._login_refused(username, None, str(exc))
            raise AuthenticationFailed(
                f"Login refused: {exc}. Send a fresh API access token as password."
            ) from None
        if claims.role not in policy.ROLES:
            reason = f"the role {claims.role} has no access to the warehouse"
            self._login_refused(username, claims, reason)
            raise AuthenticationFailed(f"Login refused: {reason}.")
        refusal = services.accounts.admit(claims, token, username)
        if refusal:
            self._login_refused(username, claims, refusal)
            raise AuthenticationFailed(f"Login refused: {refusal}.")
        self.session = Session(username, claims, token, self.remote_ip)

    def _login_refused(self, username, claims, reason) -> None:
        audit.record(
            "login",
            logging.WARNING,
            result="refused",
            user=username,
            user_id=claims.user_id if claims else "",
            role=claims.role if claims else "",
            ip=self.remote_ip,
            reason=reason,
        )

    def handle_auth_failed(self, msg, password):
        # pyftpdlib's own version capitalises (and so lower-cases) the message.
        def answer(username):
            self.add_channel()
            if not self._closed:
                self.attempted_logins += 1
                if self.attempted_logins >= self.max_login_attempts:
                    self.respond(f"530 {msg} Disconnecting.")
                    self.close_when_done()
                else:
                    self.respond(f"530 {msg}")
            self.on_login_failed(username, password)

        self.del_channel()
        self.ioloop.call_later(
            self.auth_failed_timeout, answer, self.username, _errback=self.handle_error
        )
        self.username = ""

    def on_login(self, username):
        session = self.session
        self.services.accounts.register(session)
        self._watch = self.ioloop.call_every(
            WATCH_EVERY, self._watch_session, _errback=self.handle_error
        )
        audit.record(
            "login",
            result="ok",
            user=username,
            user_id=session.user_id,
            role=session.role,
            ip=self.remote_ip,
            tls=self._tls(),
        )

    def _tls(self) -> bool:
        return bool(getattr(self, "_ssl_established", False))

    def _watch_session(self):
        session = self.session
        if session is not None and session.kicked and not self._closed:
            audit.record(
                "kicked",
                logging.WARNING,
                user=session.username,
                user_id=session.user_id,
                role=session.role,
                ip=self.remote_ip,
                reason=session.kicked,
            )
            self.respond(f"421 Session closed: {session.kicked}.")
            self.close_when_done()
            if self.data_channel is not None:
                self.data_channel.close()

    def _end_session(self):
        if self._watch is not None and not self._watch.cancelled:
            self._watch.cancel()
        self._watch = None
        if self.session is not None:
            self.services.accounts.unregister(self.session)
            self.session = None

    def flush_account(self):
        super().flush_account()
        self._end_session()

    def close(self):
        super().close()
        if self.upload is not None:
            self._finish_upload(complete=False)
        self._end_session()

    # --- every command -----------------------------------------------------------

    def pre_process_command(self, line, cmd, arg):
        try:
            paths.check_text(arg)
        except paths.BadPath as exc:
            self.respond(f"501 {exc}")
            self.log_cmd(cmd.upper(), arg, 501, str(exc))
            return
        session = self.session
        if self.authenticated and session is not None and cmd not in EXEMPT:
            if session.kicked:
                self.respond(f"421 Session closed: {session.kicked}.")
                self.close_when_done()
                return
            if session.exp <= time.time():
                msg = "Your access token expired; log in again with a fresh one."
                self.respond(f"530 {msg}")
                self.log_cmd(cmd, arg, 530, msg)
                return
        self._refusal, self._refusal_code = "", "550"
        super().pre_process_command(line, cmd, arg)

    def respond(self, resp, logfun=pyftpdlib_logger.debug):
        if resp == NOT_ENOUGH and self._refusal:
            resp = f"{self._refusal_code} {self._refusal}"
        super().respond(resp, logfun=logfun)

    def permitted(self, perm: str, path: str | None) -> bool:
        """The policy's answer for this session; keeps the reason for the reply."""
        session = self.session
        if session is None or path is None:
            return False
        where = paths.classify(self.fs.fs2ftp(path))
        pending = where.kind is paths.Kind.ORDER_FILE and (
            self.services.spool.pending(where.api_path)
        )
        accounts = self.services.accounts

        def holds(order: str) -> bool:
            return accounts.holds(session.user_id, session.token, order)

        try:
            decision = policy.decide(
                session.role, perm, where, pending=pending, holds=holds
            )
        except Unavailable as exc:
            decision = policy.deny(f"{exc}; try again in a minute")
            # 451: a transient failure the client retries; a 550 would make a
            # creator give up an upload (and its task) while the API restarts.
            self._refusal_code = "451"
        except Denied as exc:
            decision = policy.deny(str(exc))
        self._refusal = decision.reason
        return decision.ok

    def log_cmd(self, cmd, arg, respcode, respstr):
        if respcode == 550 and respstr == NOT_ENOUGH[4:] and self._refusal:
            respstr = self._refusal
        session = self.session
        who = {
            "user": session.username if session else self.username,
            "role": session.role if session else "",
            "ip": self.remote_ip,
        }
        # A password sent out of order would otherwise land in the log.
        path = "******" if cmd == "PASS" else self._virtual(arg)
        if respcode >= 400:
            audit.record(
                "refused",
                logging.WARNING,
                **who,
                cmd=cmd,
                path=path,
                code=respcode,
                reason=respstr,
            )
        elif cmd in {"DELE", "RMD", "MKD", "RNTO", "XMKD", "XRMD"}:
            audit.record("command", **who, cmd=cmd, path=path, code=respcode)

    def _virtual(self, arg) -> str:
        if isinstance(arg, tuple):
            arg = arg[-1]
        if not isinstance(arg, str):
            return str(arg)
        if any(ord(char) < 32 for char in arg):
            # A refused path (check_text): logged as escaped text, never resolved.
            return arg.encode("unicode_escape").decode()
        if self.fs is not None and os.path.isabs(arg):
            return self.fs.fs2ftp(arg)
        return arg

    def log_transfer(self, cmd, filename, receive, completed, elapsed, bytes):
        session = self.session
        upload = self.upload
        audit.record(
            "transfer",
            user=session.username if session else self.username,
            role=session.role if session else "",
            ip=self.remote_ip,
            cmd=cmd,
            path=upload.where.path if upload else self._virtual(filename),
            bytes=bytes,
            seconds=elapsed,
            completed=completed,
            tls=self._tls(),
        )

    # --- uploads: the rules are ftp.uploads' -------------------------------------

    def ftp_SIZE(self, path):
        # A creator resuming asks the size of the final name: give the .part's.
        session = self.session
        size = uploads.resume_size(session.role, path) if session else None
        if size is not None:
            if self._current_type == "a":
                self.respond("550 SIZE not allowed in ASCII mode.")
                return None
            self.respond(f"213 {size}")
            return path
        return super().ftp_SIZE(path)

    def ftp_DELE(self, path):
        if self.services.uploads.busy(path):
            self.respond("450 This file is being uploaded; try again when it is done.")
            return None
        done = super().ftp_DELE(path)
        if done:
            self.services.hashes.drop(path)
        return done

    def ftp_STOR(self, file, mode="w"):
        cmd = uploads.APPE if "a" in mode else uploads.STOR
        rest = self._restart_position
        self._restart_position = 0
        services = self.services
        where = paths.classify(self.fs.fs2ftp(file))
        part = uploads.part_of(file)
        if not services.uploads.acquire(part):
            self.respond(
                "450 This file is being uploaded by another session; "
                "try again when it is done."
            )
            return None
        try:
            declared = uploads.ask_declared(services.accounts, self.session, where)
            self.upload = uploads.begin(
                services.storage,
                services.hashes,
                command=cmd,
                rest=rest,
                where=where,
                final=file,
                declared=declared,
            )
        except uploads.Refused as refused:
            services.uploads.release(part)
            self.respond(refused.reply)
            return None
        except Exception:
            services.uploads.release(part)
            raise
        stream = self.upload.file
        if self.data_channel is not None:
            self.respond("125 Data connection already open. Transfer starting.")
            self.data_channel.file_obj = stream
            self.data_channel.enable_receiving(self._current_type, cmd)
        else:
            self.respond("150 File status okay. About to open data connection.")
            self._in_dtp_queue = (stream, cmd)
        return file

    def on_file_received(self, file):
        if self.upload is not None:
            self._finish_upload(complete=True)

    def on_incomplete_file_received(self, file):
        if self.upload is not None:
            self._finish_upload(complete=False)

    def _finish_upload(self, *, complete: bool) -> None:
        upload, self.upload = self.upload, None
        services = self.services
        try:
            upload.file.close()
            if complete and self._short(upload):
                complete = False
            if complete:
                report = uploads.complete(
                    upload,
                    storage=services.storage,
                    reporter=services.reporter,
                    hashes=services.hashes,
                )
                self._record_upload(upload, "complete", sha256=report.sha256)
            else:
                uploads.keep(upload, services.hashes)
                self._record_upload(upload, "incomplete")
        except Exception:
            log.exception("finishing the upload of %s failed", upload.where.path)
        finally:
            services.uploads.release(upload.part)

    def _short(self, upload: uploads.Upload) -> bool:
        declared = upload.declared
        if declared is None and self.session is not None:
            # Declared after the upload began: ask again.
            try:
                declared = uploads.ask_declared(
                    self.services.accounts, self.session, upload.where
                )
            except uploads.Refused:
                declared = None
        return uploads.is_short(declared, upload.file.size)

    def _record_upload(self, upload: uploads.Upload, result: str, **extra) -> None:
        session = self.session
        audit.record(
            "upload",
            user=session.username if session else "",
            role=session.role if session else "",
            ip=self.remote_ip,
            path=upload.where.path,
            result=result,
            size=upload.file.size,
            declared=upload.declared if upload.declared is not None else "",
            **extra,
        )


def handler_class(services):
    config = services.config
    base = FTPHandler
    attrs = {
        "services": services,
        "dtp_handler": dtp_class(config),
        "abstracted_fs": WarehouseFS,
        "timeout": config.idle_timeout,
        "banner": "Imager warehouse. Log in with your user name and an access token.",
        "passive_ports": list(config.passive_ports) if config.passive_ports else None,
        "masquerade_address": config.masquerade_address,
        "auth_failed_timeout": config.login_failure_delay,
        "proto_cmds": {
            k: v for k, v in FTPHandler.proto_cmds.items() if k not in DISABLED_COMMANDS
        },
    }
    if config.tls:
        from OpenSSL import SSL
        from pyftpdlib.handlers import TLS_FTPHandler

        base = TLS_FTPHandler
        attrs.update(
            proto_cmds={
                k: v
                for k, v in TLS_FTPHandler.proto_cmds.items()
                if k not in DISABLED_COMMANDS
            },
            certfile=config.tls_cert,
            keyfile=config.tls_key,
            ssl_context=None,
            ssl_options=TLS_FTPHandler.ssl_options
            | SSL.OP_NO_TLSv1
            | SSL.OP_NO_TLSv1_1,
            tls_control_required=True,
            tls_data_required=True,
        )
    return type("WarehouseHandler", (WarehouseMixin, base), attrs)


class WarehouseServer(ThreadedFTPServer):
    """pyftpdlib's threaded server with per-instance state, so several can live
    in one process (tests, benchmarks) and stop independently."""

    # Each connection's loop wakes this often: how soon a stop is noticed.
    poll_timeout = WATCH_EVERY

    def __init__(self, address, handler, *, max_cons, max_cons_per_ip, backlog):
        self._exit = threading.Event()
        self._lock = threading.Lock()
        self.max_cons = max_cons
        self.max_cons_per_ip = max_cons_per_ip
        super().__init__(address, handler, ioloop=IOLoop(), backlog=backlog)


def build_server(services) -> WarehouseServer:
    config = services.config
    return WarehouseServer(
        (config.host, config.port),
        handler_class(services),
        max_cons=config.max_connections,
        max_cons_per_ip=config.max_connections_per_ip,
        # Room for bursts of connections (hundreds of logins at once) while the
        # accepting thread hands each one its own thread.
        backlog=max(128, min(config.max_connections or 1024, 4096)),
    )
