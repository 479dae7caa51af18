"""What no image of ours may hold, checked on ``docker save`` output (standard
library only). Every layer is read, not just the final file system: a file
added in one layer and deleted in the next is still in the image.

    docker save IMAGE | python3 docker/test/check_image.py NAME \
        [--needle TEXT]... [--user UID:GID]

Findings, each a line naming the layer and the path:
- a ``.git`` folder anywhere;
- our tests under /app: ``tests`` folders, ``conftest.py``, ``test_*.py``;
- the data folders: /app/data, /app/var, files in the /data volume, and
  /app/docker (secrets, TLS keys and env files live there);
- build settings left behind: /etc/pip.conf, /etc/apt/apt.conf.d/99build-host
  (the mount points of the package index secrets), mmdebstrap's apt options;
- any ``--needle`` (canary lines the test puts into every build secret and into
  the ignored folders, and the test's own secrets) in any file of any layer or
  in the image configuration (environment, labels, history);
- a PEM private key in any file but compiled code (GnuTLS and OpenSSL carry
  their self-test keys, public test vectors);
- with ``--user``: an image whose configured user is not that one.
Exit 0 when clean, 1 with the findings, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tarfile

CHUNK = 4 * 1024 * 1024
# A key, not the marker alone (TLS libraries hold the marker as a constant): the
# header, optional RFC 1421 headers, then a line of base64.
PRIVATE_KEY = re.compile(
    rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----\r?\n"
    rb"(?:[A-Za-z-]+:[^\n]*\r?\n)*\r?\n?[A-Za-z0-9+/=]{40,}"
)
# Mount points of the build secrets (Dockerfile.site, Dockerfile.worker) and what
# mmdebstrap writes its --aptopt options into: none may outlive the build.
SETTINGS = {
    "etc/pip.conf": "pip settings of the build machine",
    "etc/apt/apt.conf.d/99build-host": "apt settings of the build machine",
    "etc/apt/apt.conf.d/99mmdebstrap": "mmdebstrap's apt options",
}


def path_problem(path: str) -> str | None:
    """Why an image may not hold ``path`` (relative, no leading slash), or None."""
    parts = path.split("/")
    name = parts[-1].removeprefix(".wh.")
    if ".git" in parts[:-1] or name == ".git":
        return "a .git folder"
    if parts[0] == "app":
        if "tests" in parts[:-1] or name in {"tests", "conftest.py"}:
            return "tests"
        if name.startswith("test_") and name.endswith(".py"):
            return "tests"
        if len(parts) > 1 and parts[1] in {"data", "var"}:
            return "the data folder"
        if len(parts) > 1 and parts[1] == "docker":
            return "docker/ files (secrets, keys, env files)"
    if parts[0] == "data" and len(parts) > 1 and name:
        return "a file in the /data volume"
    if path in SETTINGS:
        return SETTINGS[path]
    return None


class Scan:
    def __init__(self, needles: list[str]):
        self.needles = [n.encode() for n in needles if n]
        self.keep = max((len(n) for n in self.needles), default=0) + 512
        self.findings: list[str] = []
        self.files = 0
        self.bytes = 0
        self.layers = 0
        self.configs: list[dict] = []

    def find(self, where: str, stream) -> None:
        """Needles and private keys in a stream, read in chunks that overlap."""
        tail = b""
        found: set[str] = set()
        keys = True
        while chunk := stream.read(CHUNK):
            if not tail and chunk.startswith(b"\x7fELF"):
                keys = False
            self.bytes += len(chunk)
            data = tail + chunk
            for needle in self.needles:
                if needle in data:
                    found.add(f"a build or test secret ({needle.decode()!r})")
            if keys and PRIVATE_KEY.search(data):
                found.add("a PEM private key")
            tail = data[-self.keep :]
        for what in sorted(found):
            self.findings.append(f"{where}: {what}")

    def layer(self, label: str, fileobj) -> None:
        self.layers += 1
        with tarfile.open(fileobj=fileobj, mode="r|") as layer:
            for member in layer:
                path = member.name.removeprefix("./").rstrip("/")
                problem = path_problem(path)
                if problem:
                    self.findings.append(f"{label} /{path}: {problem}")
                if member.isfile():
                    self.files += 1
                    self.find(f"{label} /{path}", layer.extractfile(member))

    def config(self, label: str, raw: bytes) -> None:
        self.find(label, _Bytes(raw))
        try:
            document = json.loads(raw)
        except ValueError:
            return
        if isinstance(document, dict) and "history" in document:
            self.configs.append(document)


class _Bytes:
    def __init__(self, data: bytes):
        self.data = data

    def read(self, size: int) -> bytes:
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the image's name, for the report")
    parser.add_argument("--needle", action="append", default=[])
    parser.add_argument(
        "--user", help="the user the image must run as, e.g. 10001:10001"
    )
    options = parser.parse_args(argv)
    scan = Scan(options.needle)
    try:
        with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as saved:
            for member in saved:
                name = member.name.removeprefix("./")
                if name.endswith("layer.tar"):
                    scan.layer(name.split("/")[0][:12], saved.extractfile(member))
                elif member.isfile() and name.endswith(".json"):
                    label = f"config {name[:12]}"
                    scan.config(label, saved.extractfile(member).read())
    except tarfile.TarError as exc:
        print(f"{options.name}: not a docker save archive: {exc}", file=sys.stderr)
        return 2
    if not scan.configs or not scan.layers:
        print(f"{options.name}: no image configuration or layer read", file=sys.stderr)
        return 2
    if options.user:
        for document in scan.configs:
            user = (document.get("config") or {}).get("User") or "root"
            if user != options.user:
                scan.findings.append(f"runs as {user!r}, not {options.user}")
    summary = (
        f"{options.name}: {scan.layers} layers, {scan.files} files, "
        f"{scan.bytes / 1e6:.0f} MB read"
    )
    if scan.findings:
        print(f"{summary}: {len(scan.findings)} finding(s)")
        for finding in scan.findings:
            print(f"  {finding}")
        return 1
    print(f"{summary}: clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
