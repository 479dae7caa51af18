"""Resumable FTP transfers to and from the warehouse (DESIGN 6).

The password is an API access token, asked for at each connection (a transfer may
outlive a token). An interrupted upload is resumed from the size the warehouse reports
for it (``SIZE`` answers the size of the ``.part`` file) with ``REST`` + ``STOR``; an
interrupted download from the size of the local ``.part`` file with ``REST`` + ``RETR``.
Connection failures are retried with a growing pause; a refusal (5xx) is not.
"""

import contextlib
import errno
import ftplib
import logging
import os
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from workers.common.progress import Canceled

log = logging.getLogger(__name__)

BLOCK = 1024 * 1024
Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


class FtpError(Exception):
    """The warehouse refused the transfer, or it failed after every retry."""


class TransferCanceled(Canceled):
    """``cancel()`` returned True during the transfer."""


#: a full disk (or quota): retrying the connection cannot help, making room can
DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
#: the warehouse's answer when its disk has no room (RFC 959's insufficient storage)
NO_ROOM = "452"
#: seconds to wait for the reply to a transfer whose data connection broke
REPLY_WAIT = 5


def connect(url: str, username: str, password: str, timeout: float = 60) -> ftplib.FTP:
    parts = urlsplit(url)
    if parts.scheme not in {"ftp", "ftps"} or not parts.hostname:
        raise FtpError(f"expected ftp://HOST:PORT or ftps://HOST:PORT, got {url!r}")
    # FTP is the warehouse's protocol (DESIGN 1); ftps:// encrypts both channels
    # and checks the warehouse's certificate (IMAGER_FTP_CA_FILE for a private CA).
    if parts.scheme == "ftps":
        context = ssl.create_default_context(
            cafile=os.environ.get("IMAGER_FTP_CA_FILE") or None
        )
        ftp = ftplib.FTP_TLS(timeout=timeout, context=context)  # noqa: S321
    else:
        ftp = ftplib.FTP(timeout=timeout)  # noqa: S321
    ftp.connect(parts.hostname, parts.port or 21)
    if isinstance(ftp, ftplib.FTP_TLS):
        ftp.auth()
        ftp.login(username, password)
        ftp.prot_p()  # the data connection is encrypted too
    else:
        ftp.login(username, password)
    ftp.voidcmd("TYPE I")
    return ftp


def remote_size(ftp: ftplib.FTP, path: str) -> int | None:
    try:
        return ftp.size(path)
    except ftplib.error_perm:
        return None


def make_parents(ftp: ftplib.FTP, path: str) -> None:
    """Create the folders above ``path``; existing ones (or a server that makes
    them itself and refuses MKD) are fine: STOR then says what is wrong."""
    parts = path.strip("/").split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        with contextlib.suppress(ftplib.error_perm):
            ftp.mkd("/".join(parts[:depth]))


def _retrying(what: str, attempts: int, pause: float, step: Callable[[], bool]) -> None:
    """Run ``step`` until it returns True; retry connection-level failures."""
    delay = pause
    for attempt in range(1, attempts + 1):
        try:
            if step():
                return
        except TransferCanceled:
            raise
        except ssl.SSLCertVerificationError as exc:
            raise FtpError(
                f"{what}: the warehouse's certificate is not trusted "
                f"({exc.verify_message}); give its CA in IMAGER_FTP_CA_FILE"
            ) from exc
        except ftplib.error_perm as exc:
            raise FtpError(f"{what}: the warehouse refused: {exc}") from exc
        except (OSError, EOFError, ftplib.Error) as exc:
            if str(exc).startswith(NO_ROOM):
                # The warehouse's disk is full: resuming now would fill it again.
                raise FtpError(f"{what}: {exc}") from exc
            if attempt == attempts:
                raise FtpError(f"{what}: failed {attempts} times; last: {exc}") from exc
            log.warning("%s interrupted (%s); resuming in %.0f s", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 60)
    raise FtpError(f"{what}: incomplete after {attempts} attempts")


def upload(
    url: str,
    username: str,
    password: Callable[[], str],
    local: Path,
    remote: str,
    *,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    attempts: int = 6,
    pause: float = 2,
) -> None:
    """Upload ``local`` to ``remote``, resuming where the warehouse stopped
    when this call's transfer breaks. What the warehouse holds of ``remote``
    before the call is another build's (a retried task builds its image
    again, and no two builds are byte for byte the same): it starts over."""
    total = local.stat().st_size
    began = False

    def step() -> bool:
        nonlocal began
        ftp = connect(url, username, password())
        try:
            make_parents(ftp, remote)
            offset = (remote_size(ftp, remote) or 0) if began else 0
            began = True
            if offset > total:
                offset = 0  # a different, longer file: start again
            if offset == total and total:
                return True
            done = offset

            def sent(block: bytes) -> None:
                nonlocal done
                done += len(block)
                if progress:
                    progress(done, total)
                if cancel and cancel():
                    raise TransferCanceled

            with open(local, "rb") as handle:
                handle.seek(offset)
                try:
                    ftp.storbinary(
                        f"STOR {remote}", handle, BLOCK, sent, rest=offset or None
                    )
                except OSError:
                    # The warehouse closes the data connection to refuse the
                    # rest (its disk is full): its reply says why.
                    raise _reply_after_reset(ftp) from None
            return remote_size(ftp, remote) == total
        finally:
            _close(ftp)

    _retrying(f"upload of {remote}", attempts, pause, step)


def download(
    url: str,
    username: str,
    password: Callable[[], str],
    remote: str,
    local: Path,
    *,
    size: int | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    attempts: int = 6,
    pause: float = 2,
) -> None:
    """Download ``remote`` to ``local`` through ``local.part``, resuming it; the
    file is written sparse. A full disk ends it at once (FtpError): the
    ``.part`` stays for a resume once there is room."""
    part = local.with_name(local.name + ".part")

    def receive(ftp: ftplib.FTP, total: int | None, offset: int) -> None:
        done = offset
        # Blocks of zeros become holes: an SD-card image is mostly empty, and
        # the writer host's disk need only hold what the card will get.
        with open(part, "r+b" if part.exists() else "wb") as handle:
            handle.seek(offset)

            def received(block: bytes) -> None:
                nonlocal done
                if block.count(0) == len(block):
                    handle.seek(len(block), os.SEEK_CUR)
                else:
                    handle.write(block)
                done += len(block)
                if progress:
                    progress(done, total or done)
                if cancel and cancel():
                    raise TransferCanceled

            try:
                if total is None or offset < total:
                    ftp.retrbinary(
                        f"RETR {remote}", received, BLOCK, rest=offset or None
                    )
            finally:
                handle.truncate(done)
                handle.flush()
                os.fsync(handle.fileno())

    def step() -> bool:
        ftp = connect(url, username, password())
        try:
            total = size if size is not None else remote_size(ftp, remote)
            offset = part.stat().st_size if part.exists() else 0
            if total is not None and offset > total:
                part.unlink()
                offset = 0
            try:
                receive(ftp, total, offset)
            except OSError as exc:
                if exc.errno not in DISK_FULL:
                    raise  # a connection failure: _retrying resumes
                kept = part.stat().st_size if part.exists() else 0
                raise FtpError(
                    f"download of {remote}: no space left on device in "
                    f"{part.parent}; the {kept} bytes received are kept in "
                    f"{part.name} and resumed once there is room"
                ) from exc
            if total is not None and part.stat().st_size != total:
                return False
            os.replace(part, local)
            return True
        finally:
            _close(ftp)

    _retrying(f"download of {remote}", attempts, pause, step)


def _reply_after_reset(ftp: ftplib.FTP) -> BaseException:
    """The warehouse's reply to a transfer whose data connection broke, as
    ftplib raises it, or the connection error itself when none comes."""
    error = sys.exc_info()[1]
    try:
        ftp.sock.settimeout(REPLY_WAIT)
        ftp.voidresp()
    except ftplib.Error as reply:
        return reply
    except (OSError, EOFError):
        pass
    return error


def _close(ftp: ftplib.FTP) -> None:
    try:
        ftp.quit()
    except (OSError, EOFError, ftplib.Error):
        ftp.close()
