"""Settings of ``python -m ftp``: each one a flag and an environment variable
(the flag wins), checked up front with an error that names what to fix."""

import argparse
import ipaddress
import os
import re
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

PROG = "python -m ftp"
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
NAME = re.compile(r"^[\w.-]{1,100}$")


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names it and says what to do."""


@dataclass(frozen=True)
class Option:
    flag: str
    env: str
    help: str
    default: object = None
    convert: object = str
    metavar: str = ""

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def _size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(
            "expected bytes, e.g. 500M or 2G (K, M, G, T are powers of 1024)"
        )
    return int(match[1]) * UNITS[match[2].upper()]


def _port(text: str) -> int:
    value = int(text) if text.strip().isdigit() else -1
    if not 0 <= value <= 65535:
        raise ValueError("expected a port number from 0 (any free port) to 65535")
    return value


def _count(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError("expected a whole number (0 means no limit)")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value <= 0:
        raise ValueError("expected a number of seconds above 0")
    return value


def _ports(text: str) -> range:
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if not match or not 1024 <= int(match[1]) <= int(match[2]) <= 65535:
        raise ValueError("expected FIRST-LAST, e.g. 60000-60100 (1024 to 65535)")
    return range(int(match[1]), int(match[2]) + 1)


def _url(text: str) -> str:
    if not text.startswith(("http://", "https://")) or not urlsplit(text).netloc:
        raise ValueError("expected the API's base URL, e.g. http://127.0.0.1:8000")
    return text.rstrip("/")


def _ftp_url(text: str) -> str:
    if not re.fullmatch(r"ftps?://[^/\s]+/?", text):
        raise ValueError("expected ftp://HOST:PORT or ftps://HOST:PORT")
    return text.rstrip("/")


def _http_url(text: str) -> str:
    if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", text):
        raise ValueError("expected http[s]://HOST[:PORT][/PATH]")
    return text.rstrip("/")


def _http_port(text: str) -> int | None:
    if text.strip().lower() == "off":
        return None
    try:
        return _port(text)
    except ValueError:
        raise ValueError("expected a port number (0: any free port) or off") from None


def _address(text: str) -> str:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", text):
            raise ValueError("expected an IP address or a host name") from None
    return text


def _name(text: str) -> str:
    if not NAME.match(text):
        raise ValueError("expected 1-100 letters, digits, '_', '.' or '-'")
    return text


def _file(text: str) -> str:
    if not os.path.isfile(text):
        raise ValueError(f"no readable file at {text}")
    return text


def _level(text: str) -> str:
    if text.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
    return text.upper()


def _hostname() -> str:
    name = re.sub(r"[^\w.-]", "-", socket.gethostname())[:100]
    return name or "warehouse"


OPTIONS = [
    Option(
        "--api-url",
        "WAREHOUSE_API_URL",
        "base URL of the scheduler API (required)",
        None,
        _url,
        "URL",
    ),
    Option(
        "--username",
        "WAREHOUSE_USERNAME",
        "the warehouse's API account, role warehouse (required)",
        None,
        str,
        "NAME",
    ),
    Option(
        "--password-file",
        "WAREHOUSE_PASSWORD_FILE",
        "file holding that account's password; or set WAREHOUSE_PASSWORD",
        None,
        _file,
        "PATH",
    ),
    Option(
        "--name",
        "WAREHOUSE_NAME",
        "this warehouse's name in the API",
        _hostname,
        _name,
        "NAME",
    ),
    Option(
        "--root",
        "WAREHOUSE_ROOT",
        "storage root; images are kept in ROOT/orders/<order id>/ (required)",
        None,
        str,
        "DIR",
    ),
    Option(
        "--host",
        "WAREHOUSE_HOST",
        "address to listen on",
        "127.0.0.1",
        _address,
        "ADDRESS",
    ),
    Option(
        "--port",
        "WAREHOUSE_PORT",
        "control port (0: any free port)",
        "2121",
        _port,
        "PORT",
    ),
    Option(
        "--passive-ports",
        "WAREHOUSE_PASSIVE_PORTS",
        "passive data ports FIRST-LAST (default: any free port)",
        None,
        _ports,
        "FIRST-LAST",
    ),
    Option(
        "--masquerade-address",
        "WAREHOUSE_MASQUERADE_ADDRESS",
        "address given in PASV replies when behind NAT",
        None,
        _address,
        "ADDRESS",
    ),
    Option(
        "--public-url",
        "WAREHOUSE_PUBLIC_URL",
        "address clients use, sent to the API (default: ftp[s]://HOST:PORT)",
        None,
        _ftp_url,
        "URL",
    ),
    Option(
        "--http-port",
        "WAREHOUSE_HTTP_PORT",
        "port of the download links' HTTP(S) server (0: any free port; off: none)",
        "2180",
        _http_port,
        "PORT",
    ),
    Option(
        "--http-url",
        "WAREHOUSE_HTTP_URL",
        "base URL of download links, sent to the API (default: http[s]://HOST:PORT)",
        None,
        _http_url,
        "URL",
    ),
    Option(
        "--max-connections",
        "WAREHOUSE_MAX_CONNECTIONS",
        "most simultaneous control connections",
        "512",
        _count,
        "N",
    ),
    Option(
        "--max-connections-per-ip",
        "WAREHOUSE_MAX_CONNECTIONS_PER_IP",
        "most simultaneous connections from one address (0: no limit)",
        "0",
        _count,
        "N",
    ),
    Option(
        "--tls-cert",
        "WAREHOUSE_TLS_CERT",
        "PEM certificate (chain): FTPS (TLS required) and HTTPS for downloads",
        None,
        _file,
        "PATH",
    ),
    Option(
        "--tls-key",
        "WAREHOUSE_TLS_KEY",
        "PEM private key of the certificate (default: in the certificate file)",
        None,
        _file,
        "PATH",
    ),
    Option(
        "--max-upload-rate",
        "WAREHOUSE_MAX_UPLOAD_RATE",
        "bytes per second per upload, e.g. 50M (0: no limit)",
        "0",
        _size,
        "BYTES",
    ),
    Option(
        "--max-download-rate",
        "WAREHOUSE_MAX_DOWNLOAD_RATE",
        "bytes per second per download (0: no limit)",
        "0",
        _size,
        "BYTES",
    ),
    Option(
        "--reserve",
        "WAREHOUSE_RESERVE",
        "free space uploads may not eat into, e.g. 10G",
        "1G",
        _size,
        "BYTES",
    ),
    Option(
        "--heartbeat-interval",
        "WAREHOUSE_HEARTBEAT_INTERVAL",
        "seconds between reports of free space to the API",
        "60",
        _seconds,
        "SECONDS",
    ),
    Option(
        "--deletions-interval",
        "WAREHOUSE_DELETIONS_INTERVAL",
        "seconds between asking the API what to delete",
        "300",
        _seconds,
        "SECONDS",
    ),
    Option(
        "--jwks-interval",
        "WAREHOUSE_JWKS_INTERVAL",
        "seconds between refreshes of the API's signing keys",
        "300",
        _seconds,
        "SECONDS",
    ),
    Option(
        "--account-check-interval",
        "WAREHOUSE_ACCOUNT_CHECK_INTERVAL",
        "seconds an account check is trusted before it is asked again",
        "60",
        _seconds,
        "SECONDS",
    ),
    Option(
        "--report-retry-max",
        "WAREHOUSE_REPORT_RETRY_MAX",
        "longest wait between tries of a report to the API",
        "60",
        _seconds,
        "SECONDS",
    ),
    Option(
        "--idle-timeout",
        "WAREHOUSE_IDLE_TIMEOUT",
        "seconds a session or a stalled transfer may stay idle",
        "300",
        _seconds,
        "SECONDS",
    ),
    Option(
        "--login-failure-delay",
        "WAREHOUSE_LOGIN_FAILURE_DELAY",
        "seconds before answering a refused login",
        "1",
        float,
        "SECONDS",
    ),
    Option(
        "--log-level",
        "WAREHOUSE_LOG_LEVEL",
        "DEBUG, INFO, WARNING or ERROR",
        "INFO",
        _level,
        "LEVEL",
    ),
]


@dataclass(frozen=True)
class Config:
    api_url: str
    username: str
    password: str = field(repr=False)
    root: str
    name: str = "warehouse"
    host: str = "127.0.0.1"
    port: int = 2121
    passive_ports: range | None = None
    masquerade_address: str | None = None
    public_url: str | None = None
    http_port: int | None = None
    http_url: str | None = None
    max_connections: int = 512
    max_connections_per_ip: int = 0
    tls_cert: str | None = None
    tls_key: str | None = None
    max_upload_rate: int = 0
    max_download_rate: int = 0
    reserve: int = 1 << 30
    heartbeat_interval: float = 60.0
    deletions_interval: float = 300.0
    jwks_interval: float = 300.0
    account_check_interval: float = 60.0
    report_retry_max: float = 60.0
    idle_timeout: float = 300.0
    login_failure_delay: float = 1.0
    log_level: str = "INFO"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "The warehouse: an FTP server that receives images from creators and "
            "serves them to downloaders, and an HTTP(S) server for the download "
            "links the API signs. Users log in with their user name and a "
            "valid API access token as the password. Every flag can also be set "
            "with the environment variable shown; the flag wins."
        ),
        epilog="Password: WAREHOUSE_PASSWORD (environment only) or --password-file.",
    )
    for option in OPTIONS:
        default = option.default() if callable(option.default) else option.default
        shown = f"; default {default}" if default not in (None, "") else ""
        parse.add_argument(
            option.flag,
            dest=option.dest,
            default=None,
            metavar=option.metavar or None,
            help=f"{option.help} [{option.env}{shown}]",
        )
    return parse


def load(argv: list[str] | None = None, environ=None) -> Config:
    """The configuration from flags and environment, or ``ConfigError``."""
    environ = os.environ if environ is None else environ
    args = parser().parse_args(argv)
    values = {}
    for option in OPTIONS:
        raw, source = getattr(args, option.dest), option.flag
        if raw is None and environ.get(option.env, "") != "":
            raw, source = environ[option.env], option.env
        if raw is None:
            default = option.default() if callable(option.default) else option.default
            raw = default
        if raw is None:
            values[option.dest] = None
            continue
        try:
            values[option.dest] = option.convert(raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}; got {raw!r}") from None
    for dest in ("api_url", "username", "root"):
        if not values[dest]:
            option = next(o for o in OPTIONS if o.dest == dest)
            raise ConfigError(f"{option.flag} (or {option.env}) is required")
    if values["http_url"] and values["http_port"] is None:
        raise ConfigError("--http-url needs the HTTP server: --http-port is off")
    if values["tls_key"] and not values["tls_cert"]:
        raise ConfigError("--tls-key needs --tls-cert (or WAREHOUSE_TLS_CERT)")
    values["password"] = _password(values.pop("password_file"), environ)
    return Config(**values)


def _password(path: str | None, environ) -> str:
    if path:
        try:
            with open(path) as stream:
                password = stream.read().strip()
        except OSError as exc:
            raise ConfigError(
                f"--password-file: cannot read {path} ({exc.strerror})"
            ) from None
        if not password:
            raise ConfigError(f"--password-file: {path} is empty")
        return password
    password = environ.get("WAREHOUSE_PASSWORD", "")
    if not password:
        raise ConfigError(
            "the warehouse account's password is missing: set WAREHOUSE_PASSWORD "
            "or --password-file"
        )
    return password
