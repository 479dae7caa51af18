"""whost's configuration: one TOML file for the host, one root-only file for the
password, both written atomically (a power cut leaves the old file or the new
one, never half of one).

The format (README, "Set up a writer host")::

    [api]
    url = "https://imager.example.org"
    username = "host-1"
    password_file = "/etc/whost/password"   # mode 600, root only

    [host]
    name = "host-1"
    data_dir = "/srv/whost"                  # images in data_dir/images
    space_per_slot = "256G"
    reserve = "2G"
    runner = "systemd"                       # or "docker"

    [slots.slot-1]
    path = "pci-0000:00:14.0-usb-0:2:1.0-scsi-0:0:0:0"
    reader = "05e3:0751 000000000819"
    model = "Generic STORAGE DEVICE"
    lun = "0:0"

Plain Python, no Django (DESIGN 2); the writer reads the slots from here
(``writer_slots``) with ``python -m workers.writer --config``.
"""

import json
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from workers.common.worker import UsageError, parse_size

DEFAULT_CONFIG = "/etc/whost/whost.toml"
# The API's rule for a slot name (apps/scheduler/api/serializers.py).
NAME = re.compile(r"^[\w.-]{1,50}$")
HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,99}$")
BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
RUNNERS = ("systemd", "docker")
LOOP_PREFIX = "/devices/virtual/block/loop"


class ConfigError(Exception):
    """The configuration file is missing or wrong; the message names the key."""


@dataclass
class SlotEntry:
    """A named slot: ``path`` is the stable physical path of its reader (udev's
    ID_PATH, which names the USB port and the LUN; a loop device's sysfs path);
    ``reader``, ``model`` and ``lun`` say which reader was there when it was
    named, so ``whost slots check`` sees a reader that moved."""

    name: str
    path: str
    reader: str = ""
    model: str = ""
    lun: str = ""

    @property
    def device(self) -> str:
        return device_for(self.path)


@dataclass
class Config:
    api_url: str = ""
    username: str = ""
    password_file: Path = Path("/etc/whost/password")
    host: str = ""
    data_dir: Path = Path("/srv/whost")
    space_per_slot: str = "256G"
    reserve: str = "2G"
    runner: str = "systemd"
    slots: dict[str, SlotEntry] = field(default_factory=dict)

    @property
    def image_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def space_per_slot_bytes(self) -> int:
        return parse_size(self.space_per_slot)

    def password(self) -> str:
        try:
            return self.password_file.read_text().splitlines()[0]
        except (OSError, IndexError) as exc:
            raise ConfigError(
                f"api.password_file: cannot read {self.password_file} ({exc}); "
                "run whost init to write it"
            ) from None


def human(size: int) -> str:
    """Bytes the way sizes are written here (256G: powers of 1024)."""
    return f"{size / 2**30:.1f}G"


def device_for(path: str) -> str:
    """The device node the writer opens for a slot's stable path: udevd's
    /dev/disk/by-path link (it follows the port, not the kernel's sdX), or a
    loop device's own node (its number is its identity)."""
    if path.startswith(LOOP_PREFIX):
        return "/dev/" + path.rsplit("/", 1)[1]
    return "/dev/disk/by-path/" + path


class Paths:
    """Where whost writes on this machine: under / normally, under ``root``
    with ``--root DIR`` (tests and trials: nothing there is started, and the
    files name paths under DIR)."""

    def __init__(self, root: Path | str = "/", config: Path | str | None = None):
        self.root = Path(root).absolute()
        self.config = Path(config).absolute() if config else self.under(DEFAULT_CONFIG)

    @property
    def live(self) -> bool:
        return self.root == Path("/")

    def under(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    @property
    def units(self) -> Path:
        return self.under("/etc/systemd/system")

    @property
    def compose_env(self) -> Path:
        return self.config.parent / "compose.env"

    @property
    def docker_password(self) -> Path:
        return self.config.parent / "docker.password"


# --- reading ------------------------------------------------------------------

SECTIONS = {
    "api": {"url", "username", "password_file"},
    "host": {"name", "data_dir", "space_per_slot", "reserve", "runner"},
}
SLOT_KEYS = {"path", "reader", "model", "lun"}


def load(path: Path) -> Config:
    """Read and check the file; ConfigError names the first wrong key."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: run whost init") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse(data: dict) -> Config:
    for key in data:
        if key not in {*SECTIONS, "slots"}:
            raise ConfigError(f"{key}: unknown section (known: api, host, slots)")
    for section, keys in SECTIONS.items():
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{section}: must be a table ([{section}])")
        for key in table:
            if key not in keys:
                raise ConfigError(
                    f"{section}.{key}: unknown key (known: {', '.join(sorted(keys))})"
                )
    api, host = data.get("api", {}), data.get("host", {})
    config = Config(
        api_url=_text(api, "api", "url", required=True),
        username=_text(api, "api", "username", required=True),
        password_file=_absolute(api, "api", "password_file", Config.password_file),
        host=_text(host, "host", "name", required=True),
        data_dir=_absolute(host, "host", "data_dir", Config.data_dir),
        space_per_slot=_size(host, "host", "space_per_slot", Config.space_per_slot),
        reserve=_size(host, "host", "reserve", Config.reserve),
        runner=_text(host, "host", "runner") or Config.runner,
    )
    check_values(config)
    slots = data.get("slots", {})
    if not isinstance(slots, dict):
        raise ConfigError("slots: must be a table ([slots.NAME])")
    seen: dict[str, str] = {}
    for name, table in slots.items():
        key = f"slots.{_key(name)}"
        if not NAME.match(name):
            raise ConfigError(
                f"{key}: a slot name has 1-50 letters, digits, '.', '_' or '-'"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{key}: must be a table with path = …")
        for item in table:
            if item not in SLOT_KEYS:
                raise ConfigError(
                    f"{key}.{item}: unknown key (known: {', '.join(sorted(SLOT_KEYS))})"
                )
        entry = SlotEntry(
            name=name,
            path=_text(table, key, "path", required=True),
            reader=_text(table, key, "reader"),
            model=_text(table, key, "model"),
            lun=_text(table, key, "lun"),
        )
        if entry.path.startswith("/dev/"):
            raise ConfigError(
                f"{key}.path: {entry.path} is a device name the kernel may give "
                "another reader; run whost slots identify to record the port"
            )
        if entry.path in seen:
            raise ConfigError(
                f"{key}.path: the same reader as slots.{_key(seen[entry.path])}"
            )
        seen[entry.path] = name
        config.slots[name] = entry
    return config


def check_values(config: Config) -> None:
    if not config.api_url.startswith(("http://", "https://")):
        raise ConfigError("api.url: must start with http:// or https://")
    if not HOST.match(config.host):
        raise ConfigError(
            "host.name: letters, digits, '.' and '-', starting with a letter or digit"
        )
    if config.runner not in RUNNERS:
        raise ConfigError(f"host.runner: {config.runner!r} is not one of {RUNNERS}")


def _text(table: dict, section: str, key: str, *, required=False) -> str:
    value = table.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{section}.{key}: must be a string in double quotes")
    if required and not value.strip():
        raise ConfigError(f"{section}.{key}: missing; run whost init")
    return value.strip()


def _absolute(table: dict, section: str, key: str, default: Path) -> Path:
    value = _text(table, section, key)
    if not value:
        return default
    if not os.path.isabs(value):
        raise ConfigError(f"{section}.{key}: must be an absolute path, got {value!r}")
    return Path(value)


def _size(table: dict, section: str, key: str, default: str) -> str:
    value = _text(table, section, key) or default
    try:
        parse_size(value)
    except UsageError:
        raise ConfigError(
            f"{section}.{key}: {value!r} is not a size; write e.g. 256G or 800M"
        ) from None
    return value


def writer_slots(path: Path) -> dict[str, str]:
    """``{slot name: device}`` for ``python -m workers.writer --config``."""
    config = load(Path(path))
    if not config.slots:
        raise ConfigError(f"{path}: no slot is named yet; run whost slots identify")
    return {name: slot.device for name, slot in config.slots.items()}


# --- writing ------------------------------------------------------------------


def dumps(config: Config) -> str:
    lines = [
        "# whost's configuration (README: Set up a writer host). whost init and",
        "# whost slots write it; edit it by hand with care: whost doctor checks it.",
        "",
        "[api]",
        f"url = {_str(config.api_url)}",
        f"username = {_str(config.username)}",
        f"password_file = {_str(str(config.password_file))}  # mode 600, root only",
        "",
        "[host]",
        f"name = {_str(config.host)}",
        f"data_dir = {_str(str(config.data_dir))}  # images in data_dir/images",
        f"space_per_slot = {_str(config.space_per_slot)}",
        f"reserve = {_str(config.reserve)}",
        f"runner = {_str(config.runner)}",
    ]
    for name, slot in config.slots.items():
        lines += ["", f"[slots.{_key(name)}]", f"path = {_str(slot.path)}"]
        for key in ("reader", "model", "lun"):
            if getattr(slot, key):
                lines.append(f"{key} = {_str(getattr(slot, key))}")
    return "\n".join(lines) + "\n"


def _str(value: str) -> str:
    # A JSON string is a TOML basic string, but for DEL, which TOML wants escaped.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _key(name: str) -> str:
    return name if BARE_KEY.match(name) else _str(name)


def write_atomic(path: Path, text: str, mode: int) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder,
    synced, then renamed over it: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, mode)  # before any byte of a secret is in it
        with os.fdopen(handle, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)


def save(config: Config, path: Path) -> None:
    check_values(config)
    write_atomic(path, dumps(config), 0o644)


def save_password(config: Config, password: str) -> None:
    config.password_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(config.password_file, password + "\n", 0o600)
