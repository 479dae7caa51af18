"""A local OCI registry for the demo and the tests, holding small images pushed
with skopeo: Debian's ``docker-registry`` on a free loopback port, with its own
configuration and storage folder. Nothing is pulled from Docker Hub: the images
are OCI layouts made here (a config, one small layer, a manifest per platform
and an index)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import requests

from demo.inputs import ToolError, run

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
#: a Raspberry Pi's platform and a PC's, so that a pull must choose
PLATFORMS = (("arm64", "v8"), ("amd64", ""))


def make_oci_layout(folder: Path, tag: str = "1.0", platforms=PLATFORMS) -> Path:
    """An OCI layout at ``folder`` with one multi-platform image tagged ``tag``:
    per platform, one layer holding ``hello.txt`` ("hello from <arch>")."""
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def blob(data: bytes, media_type: str, **extra) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", **extra} | {
            "size": len(data)
        }

    manifests = []
    for arch, variant in platforms:
        layer = io.BytesIO()
        with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            text = f"hello from {arch}\n".encode()
            info = tarfile.TarInfo("hello.txt")
            info.size, info.mtime, info.mode = len(text), 0, 0o644
            tar.addfile(info, io.BytesIO(text))
        platform = {"architecture": arch, "os": "linux"}
        if variant:
            platform["variant"] = variant
        config = {
            **platform,
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {
                "type": "layers",
                "diff_ids": [f"sha256:{hashlib.sha256(layer.getvalue()).hexdigest()}"],
            },
            "history": [{"created_by": "demo.registry.make_oci_layout"}],
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": blob(json.dumps(config).encode(), OCI_CONFIG),
            "layers": [blob(gzip.compress(layer.getvalue(), mtime=0), OCI_LAYER)],
        }
        manifests.append(
            blob(json.dumps(manifest).encode(), OCI_MANIFEST, platform=platform)
        )
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    top = blob(json.dumps(index).encode(), OCI_INDEX)
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (folder / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    layout_index = {"schemaVersion": 2, "manifests": [top]}
    (folder / "index.json").write_text(json.dumps(layout_index))
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalRegistry:
    """``docker-registry serve`` on 127.0.0.1 with its storage in ``folder``;
    ``log`` records its requests (the tests count blob downloads)."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.log = folder / "registry.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> LocalRegistry:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise ToolError("docker-registry missing: apt-get install docker-registry")
        storage = self.folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = self.folder / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n  secret: demo-registry\n"
        )
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 15
        while True:
            try:
                if requests.get(f"{self.url}/v2/", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ToolError(f"docker-registry did not start: see {self.log}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def push(self, layout: Path, target: str, tag: str = "1.0") -> None:
        """Push every platform of ``layout``'s ``tag`` here as ``target``
        (``name:tag``)."""
        run(
            "skopeo", "--insecure-policy", "copy", "--quiet", "--all",
            "--dest-tls-verify=false", f"oci:{layout}:{tag}",
            f"docker://{self.host}/{target}",
        )  # fmt: skip

    def stand_in_for(self, idents, layout: Path, tag: str = "1.0") -> None:
        """Push ``layout`` under each image name of ``idents`` (a recipe's
        ``ghcr.io/offspot/…:tag``), registry part left out: with the creator's
        ``--registry-mirror ghcr.io=<this registry's url>`` a recipe rendered by
        ConfigBuilder builds offline, every image being this small one."""
        for ident in idents:
            self.push(layout, ident.split("/", 1)[1], tag)

    def requests_for(self, what: str) -> list[str]:
        """The access log's request lines that contain ``what``."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if what in line and '"GET ' in line]


def skopeo_available() -> bool:
    return shutil.which("skopeo", path=os.environ.get("PATH")) is not None
