"""``whost doctor``: is this host ready to write cards? One line per check,
``ok name: detail`` or ``FAIL name: detail (hint)``."""

import ftplib
import os
import shutil
import stat
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

from whost.config import Config, ConfigError, human, load
from whost.readers import event_source
from workers.common.api import ApiClient, ApiError
from workers.common.ftp import FtpError, connect

CLOCK_SLACK = 60  # seconds: tokens and leases are dated by the API
EVENT_WAIT = 3.0  # seconds for a test uevent to come back
# A device no rule cares about: a "change" event on it is harmless.
TEST_DEVICE = "/sys/devices/virtual/mem/null"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""

    def line(self) -> str:
        if self.ok:
            return f"ok {self.name}: {self.detail}"
        return f"FAIL {self.name}: {self.detail}" + (
            f" ({self.hint})" if self.hint else ""
        )


def passed(name, detail):
    return Check(name, True, detail)


def failed(name, detail, hint=""):
    return Check(name, False, detail, hint)


class Doctor:
    """Runs the checks in order; later ones use what earlier ones found."""

    def __init__(self, config_path: Path, clock=time.time):
        self.config_path = config_path
        self.clock = clock
        self.config: Config | None = None
        self.api = None
        self.reached = False
        self.logged_in = False
        self.api_date = None
        self.local_date = 0.0

    def run(self):
        for check in (
            self.check_config,
            self.check_root,
            self.check_udev,
            self.check_space,
            self.check_api,
            self.check_login,
            self.check_warehouse,
            self.check_slots,
            self.check_clock,
        ):
            yield check()

    # -- each check ----------------------------------------------------------------

    def check_config(self) -> Check:
        try:
            self.config = load(self.config_path)
        except ConfigError as exc:
            return failed("config", str(exc), "fix it, or run whost init")
        secret = self.config.password_file
        try:
            st = secret.stat()
        except OSError as exc:
            return failed(
                "config", f"{secret}: {exc.strerror}", "run whost init to write it"
            )
        if stat.S_IMODE(st.st_mode) & 0o077 or st.st_uid != 0:
            return failed(
                "config",
                f"{secret} is mode {stat.S_IMODE(st.st_mode):o}, owner uid "
                f"{st.st_uid}: others may read the password",
                f"chown root {secret} && chmod 600 {secret}",
            )
        return passed("config", f"{self.config_path}, password in {secret} (mode 600)")

    def check_root(self) -> Check:
        if os.geteuid() == 0:
            return passed("root", "running as root")
        return failed(
            "root",
            f"running as uid {os.geteuid()}: the workers open block devices and "
            "whost writes to /etc",
            "run it with sudo",
        )

    def check_udev(self) -> Check:
        try:
            import pyudev
        except ImportError as exc:
            return failed(
                "udev",
                f"pyudev cannot be imported ({exc})",
                ".venv/bin/pip install -r requirements.txt",
            )
        source = event_source()
        try:
            context = pyudev.Context()
            monitor = pyudev.Monitor.from_netlink(context, source=source)
            monitor.start()
        except (OSError, ImportError) as exc:
            return failed(
                "udev",
                f"cannot listen to uevents ({exc})",
                "install libudev1; run whost on the host itself as root",
            )
        try:
            # Ask the kernel to send an event now, and wait for it to come back.
            with open(f"{TEST_DEVICE}/uevent", "w") as trigger:
                trigger.write("change")
        except OSError as exc:
            return failed(
                "udev",
                f"cannot send a test uevent ({TEST_DEVICE}/uevent: {exc.strerror})",
                "run it as root, on the host (not in a container)",
            )
        deadline = time.monotonic() + EVENT_WAIT
        while time.monotonic() < deadline:
            device = monitor.poll(timeout=max(0.0, deadline - time.monotonic()))
            if device is not None and device.sys_path == TEST_DEVICE:
                break
        else:
            return failed(
                "udev",
                f"no {source} uevent came back within {EVENT_WAIT:.0f} s: cards "
                "would be seen late, by polling only",
                "run on the host's network namespace (Docker: network_mode host); "
                + (
                    "check that systemd-udevd runs"
                    if source == "udev"
                    else "start udevd"
                ),
            )
        usb = self.config and any(
            not slot.device.startswith("/dev/loop")
            for slot in self.config.slots.values()
        )
        if source == "kernel" and usb:
            return failed(
                "udev",
                "udevd is not running: the readers' /dev/disk/by-path links are "
                "missing",
                "apt-get install udev; systemctl start systemd-udevd",
            )
        return passed(
            "udev",
            f"pyudev {pyudev.__version__}, {source} uevents arrive"
            + (" (udevd is not running)" if source == "kernel" else ""),
        )

    def check_space(self) -> Check:
        if self.config is None:
            return failed("space", "not checked: no configuration", "see config above")
        config = self.config
        slots = max(1, len(config.slots))
        try:
            need = config.space_per_slot_bytes * slots
            folder = config.data_dir
            while not folder.exists():
                folder = folder.parent  # whost start makes it; its disk counts
            free = shutil.disk_usage(folder).free
        except OSError as exc:
            return failed("space", f"{config.data_dir}: {exc}", "check the data folder")
        images = folder_size(config.image_dir)
        have = free + images
        detail = (
            f"{human(have)} for images in {config.data_dir} ({human(free)} free + "
            f"{human(images)} of images), {human(need)} wanted: {slots} slot(s) "
            f"at {config.space_per_slot}"
        )
        if have < need:
            return failed(
                "space",
                detail,
                "free some space, use a bigger disk for host.data_dir, or lower "
                "host.space_per_slot",
            )
        return passed("space", detail)

    def check_api(self) -> Check:
        if self.config is None:
            return failed("api", "not checked: no configuration", "see config above")
        config = self.config
        try:
            password = config.password()
        except ConfigError:
            password = ""
        self.api = ApiClient(
            config.api_url,
            config.username,
            password,
            timeout=10,
            retries=0,
            user_agent="whost-doctor",
        )
        url = self.api.base + "api/v1/health/"
        try:
            # The client's own session: the Date header is the API's clock.
            response = self.api.session.get(url, timeout=10)
        except Exception as exc:
            return failed(
                "api",
                f"cannot reach {config.api_url} ({type(exc).__name__})",
                "check api.url, the network (whost network) and the firewall",
            )
        self.reached = True
        self.local_date = self.clock()
        if response.headers.get("Date"):
            self.api_date = parsedate_to_datetime(response.headers["Date"]).timestamp()
        if response.status_code != 200:
            return failed(
                "api",
                f"{url} answered {response.status_code}",
                "the central site's database or Redis is down: tell its admin",
            )
        return passed("api", f"{config.api_url} answers")

    def check_login(self) -> Check:
        if not self.reached:
            return failed("login", "not tried: the API is unreachable", "see api above")
        try:
            self.api.login()
            me = self.api.get("api/v1/users/me/")
        except ApiError as exc:
            return failed(
                "login",
                f"{self.config.username}: {exc}",
                "check api.username and the password (whost init), or give the "
                "account a new one on the central site (manage.py create_account "
                f"{self.config.username} --update --write-password FILE)",
            )
        role = me.get("role", "")
        if role != "writer":
            return failed(
                "login",
                f"{self.config.username} has role {role!r}, not writer",
                "a writer host needs a writer account (manage.py create_account "
                "NAME --role writer)",
            )
        self.logged_in = True
        return passed("login", f"logged in as {self.config.username} (role writer)")

    def check_warehouse(self) -> Check:
        if not self.logged_in:
            return failed("warehouse", "not tried: no login", "see login above")
        try:
            answer = self.api.get("api/v1/warehouses/")
        except ApiError as exc:
            return failed("warehouse", f"cannot list the warehouses: {exc}")
        warehouses = (
            answer.get("results", answer) if isinstance(answer, dict) else answer
        )
        online = [w for w in warehouses if w.get("online")]
        if not online:
            return failed(
                "warehouse",
                "the API knows no online warehouse",
                "start the warehouse on the central site (python -m ftp)",
            )
        problems = []
        for warehouse in online:
            url = warehouse["ftp_url"]
            try:
                ftp = connect(url, self.config.username, self.api.access_token, 10)
                ftp.quit()
            except (OSError, EOFError, ftplib.Error, FtpError) as exc:
                problems.append(f"{warehouse['name']} at {url}: {exc}")
                continue
            return passed(
                "warehouse", f"{warehouse['name']} at {url}: logged in with a token"
            )
        return failed(
            "warehouse",
            "; ".join(problems),
            "open the warehouse's FTP port and passive ports to this host; a "
            "refused login means the warehouse cannot check tokens with the API",
        )

    def check_slots(self) -> Check:
        if self.config is None:
            return failed("slots", "not checked: no configuration", "see config above")
        slots = self.config.slots
        if not slots:
            return failed("slots", "no slot is named", "run whost slots identify")
        missing = []
        for slot in slots.values():
            try:
                present = stat.S_ISBLK(os.stat(slot.device).st_mode)
            except OSError:
                present = False
            if not present:
                missing.append(f"{slot.name} ({slot.device})")
        if missing:
            return failed(
                "slots",
                f"no reader for {', '.join(missing)}",
                "plug the readers in; whost slots check says if one moved",
            )
        return passed("slots", f"{len(slots)} named, every reader present")

    def check_clock(self) -> Check:
        if self.api_date is None:
            return failed(
                "clock", "not checked: no answer from the API", "see api above"
            )
        skew = self.local_date - self.api_date
        where = "ahead of" if skew > 0 else "behind"
        detail = f"{abs(skew):.0f} s {where} the API's"
        if abs(skew) > CLOCK_SLACK:
            return failed(
                "clock",
                detail,
                "set the time: apt-get install systemd-timesyncd (or chrony)",
            )
        return passed("clock", detail)


def folder_size(folder: Path) -> int:
    """Bytes the files below ``folder`` take on disk (images are sparse)."""
    total = 0
    for path in folder.rglob("*") if folder.is_dir() else ():
        try:
            total += path.lstat().st_blocks * 512
        except OSError:
            continue
    return total
