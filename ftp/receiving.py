"""The data channel of the warehouse's uploads: bytes straight into the
``.part``'s buffers, and a full disk answered as such.

pyftpdlib wraps a failed file write in an error that keeps no errno, so a full
disk reached the creator as "426 None; transfer aborted.": nothing said it was
the disk, nor that the bytes received were kept. It is answered here with 452
(insufficient storage, RFC 959) saying both, and logged with the folder.
"""

import errno
import logging
import sys

from pyftpdlib.exceptions import _FileReadWriteError
from pyftpdlib.handlers import DTPHandler, ThrottledDTPHandler
from pyftpdlib.ioloop import _ERRNOS_DISCONNECTED, _ERRNOS_RETRY
from pyftpdlib.log import logger as pyftpdlib_logger

from ftp.hashing import HashingFile

log = logging.getLogger(__name__)

# Bigger than pyftpdlib's 64 KiB: fewer wake-ups and system calls per gigabyte.
RECV_BUFFER = 1 << 20
SEND_BUFFER = 1 << 20
#: a full disk (or quota), or the reserve reached (ftp.hashing)
DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def disk_full(error: BaseException | None) -> bool:
    """Whether ``error`` (pyftpdlib's wrapper or its cause) is a full disk."""
    if isinstance(error, _FileReadWriteError):
        cause = error.__cause__ or (error.args[0] if error.args else None)
        return isinstance(cause, OSError) and cause.errno in DISK_FULL
    return False


class DiskFullReply:
    """452 for an upload that filled the disk; other errors as pyftpdlib
    answers them."""

    def handle_error(self):
        if not (self.receive and disk_full(sys.exc_info()[1])):
            return super().handle_error()
        upload = getattr(self.cmd_channel, "upload", None)
        path = upload.where.path if upload else "the file"
        size = self.file_obj.size if isinstance(self.file_obj, HashingFile) else 0
        root = self.cmd_channel.services.storage.root
        log.warning(
            "no space left on device in %s while receiving %s: "
            "the %d bytes received are kept for a resume",
            root,
            path,
            size,
        )
        reply = (
            f"452 No space left on the warehouse's disk for {path}: the {size} "
            "bytes received are kept; resume (APPE, or REST and STOR) once the "
            "operator has made room."
        )
        self._resp = (reply, pyftpdlib_logger.warning)
        self.close()
        return None


class DirectReceive:
    """Receives uploads straight into the file's reusable buffers
    (``recv_into``) instead of a new bytes object per chunk, which costs memory
    allocation and page faults at a gigabyte per second. Only on plain sockets
    in binary mode without a rate limit; otherwise pyftpdlib's own path."""

    def handle_read(self):
        stream = self.file_obj
        if not isinstance(stream, HashingFile) or self._data_wrapper is not None:
            return super().handle_read()
        buffer = stream.buffer()
        try:
            length = self.socket.recv_into(buffer)
        except OSError as err:
            stream.give_back(buffer)
            if err.errno in _ERRNOS_RETRY:
                return None
            if err.errno in _ERRNOS_DISCONNECTED:
                return self.handle_close()
            return self.handle_error()
        if not length:
            stream.give_back(buffer)
            return self.handle_close()  # the client closed: the end of the file
        self.tot_bytes_received += length
        try:
            stream.write_from(buffer, length)
        except OSError as err:
            raise _FileReadWriteError(err) from err
        return None

    handle_read_event = handle_read  # the I/O loop calls this name


def dtp_class(config):
    bases = []
    if config.tls:
        from pyftpdlib.handlers import TLS_DTPHandler

        bases.append(TLS_DTPHandler)
    if config.max_upload_rate or config.max_download_rate:
        bases.append(ThrottledDTPHandler)
    if not bases:
        bases = [DirectReceive, DTPHandler]
    bases.insert(0, DiskFullReply)
    attrs = {
        "ac_in_buffer_size": RECV_BUFFER,
        "ac_out_buffer_size": SEND_BUFFER,
        "timeout": config.idle_timeout,
        "read_limit": config.max_upload_rate,
        "write_limit": config.max_download_rate,
    }
    return type("WarehouseDTP", tuple(bases), attrs)
