#!/usr/bin/env python3
"""Throughput of instance exports and imports (gnt-backup) next to cp and zstd.

Starts a 2-node dev cluster (fake hypervisor, file disks) on a loopback
range, with an OS whose export/import scripts stream the disk as it is
(``cat`` / ``dd``, like the busybox OS). An instance on node1 gets a disk
image (default 1 GiB: a quarter random data, a quarter repetitive text,
half zeros, like a partly used disk), then times, for each compression:

* OP_BACKUP_EXPORT node1 -> node2 (whole job: shutdown, transfer, finalize,
  restart), and the transfer alone as reported in the job log,
* OP_INSTANCE_CREATE mode import node2 -> node1 (whole job, creates the
  disk, transfer, start), checksum verified,

and, for comparison, ``cp`` of the image and ``zstd`` of it to a file.
Prints MiB/s of the image size per wall-clock second. Not a test.

Usage: ``.venv/bin/python bench/backup_throughput.py [--size MiB]
[--tools none,gzip,zstd] [--base 127.0.9]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from corral import devcluster
from corral.process import run_command

MIB = 1024 * 1024
OS_NAME = "bench-dd"
_SCRIPTS = {
    "ganeti_api_version": "20\n", "parameters.list": "",
    "create": "#!/bin/sh\nexit 0\n", "rename": "#!/bin/sh\nexit 0\n",
    "verify": "#!/bin/sh\nexit 0\n",
    "export": '#!/bin/sh\nset -e\nstat -L -c %s "$EXPORT_DEVICE" >&$EXP_SIZE_FD\n'
              'exec cat "$EXPORT_DEVICE"\n',
    "import": '#!/bin/sh\nexec dd of="$IMPORT_DEVICE" bs=1M conv=notrunc status=none\n',
}
_TRANSFER_RE = re.compile(r"transfer complete, (\d+) MiB in ([\d.]+) s")


def fill_image(path: Path, size_mib: int) -> None:
    text_block = b"".join(b"Corral backup benchmark, line %d of some text\n" % i
                          for i in range(25000))[:MIB]
    with open(path, "r+b") as fh:
        for i in range(size_mib):
            kind = i % 4
            if kind == 0:
                fh.write(os.urandom(MIB))
            elif kind == 1:
                fh.write(text_block)
            else:
                fh.write(bytes(MIB))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


def timed_command(argv: list[str]) -> float:
    start = time.monotonic()
    res = run_command(argv, timeout=3600)
    if res.failed:
        sys.exit(f"{argv[0]} failed: {res.fail_reason()} {res.stderr}")
    return time.monotonic() - start


class Runner:
    def __init__(self, client: Any) -> None:
        self.client = client

    def run(self, op: dict[str, Any]) -> tuple[Any, float, float | None]:
        """(result, job seconds, transfer seconds from the log or None)."""
        log: list[str] = []
        start = time.monotonic()
        result = self.client.wait_job(self.client.submit_job([op]),
                                      lambda e: log.append(str(e[2])), timeout=3600)[0]
        elapsed = time.monotonic() - start
        transfer = None
        for line in log:
            m = _TRANSFER_RE.search(line)
            if m:
                transfer = (transfer or 0.0) + float(m.group(2))
        return result, elapsed, transfer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="disk size in MiB")
    parser.add_argument("--tools", default="none,gzip,zstd")
    parser.add_argument("--base", default="127.0.9", help="loopback range (127.x.y)")
    args = parser.parse_args()
    top = Path(tempfile.mkdtemp(prefix="corral-bb-", dir="/tmp"))
    try:
        dev = devcluster.up(2, top, base=args.base, cluster_name="bench")
        for node in dev.nodes:
            d = node.paths.os_dir / OS_NAME
            d.mkdir(parents=True, exist_ok=True)
            for name, body in _SCRIPTS.items():
                (d / name).write_text(body)
                (d / name).chmod(0o755)
        with dev.client(timeout=120) as client:
            runner = Runner(client)
            runner.run({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "bench1",
                        "mode": "create", "disk_template": "file", "os_type": OS_NAME,
                        "pnode": "node1", "disks": [{"size": args.size}], "nics": [],
                        "name_check": False, "ip_check": False})
            info = runner.run({"OP_ID": "OP_INSTANCE_QUERY_DATA", "instances": ["bench1"],
                               "static": True})[0]["bench1"]
            image = dev.node("node1").paths.real(info["disks"][0]["logical_id"][1])
            fill_image(image, args.size)
            digest = sha256(image)
            rows: list[tuple[str, float]] = []
            rows.append(("cp", timed_command(["cp", str(image), str(top / "copy.img")])))
            os.unlink(top / "copy.img")
            rows.append(("zstd (to file)", timed_command(
                ["zstd", "-q", "-f", "-o", str(top / "image.zst"), str(image)])))
            os.unlink(top / "image.zst")
            for i, tool in enumerate(t.strip() for t in args.tools.split(",") if t.strip()):
                _, job, xfer = runner.run({"OP_ID": "OP_BACKUP_EXPORT",
                                           "instance_name": "bench1", "target_node": "node2",
                                           "compress": tool})
                rows.append((f"export {tool} (job)", job))
                if xfer:
                    rows.append((f"export {tool} (transfer)", xfer))
                name = f"imported{i}"
                _, job, xfer = runner.run({
                    "OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "import",
                    "src_node": "node2", "src_path": "bench1", "pnode": "node1",
                    "disks": [], "nics": [], "name_check": False, "ip_check": False,
                    "compress": tool, "start": False})
                rows.append((f"import {tool} (job)", job))
                if xfer:
                    rows.append((f"import {tool} (transfer)", xfer))
                new = runner.run({"OP_ID": "OP_INSTANCE_QUERY_DATA", "instances": [name],
                                  "static": True})[0][name]
                if sha256(dev.node("node1").paths.real(new["disks"][0]["logical_id"][1])) \
                        != digest:
                    sys.exit(f"{tool}: the imported disk differs from the original")
                runner.run({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": name})
        print(f"disk: {args.size} MiB (25% random, 25% text, 50% zeros), "
              f"{os.cpu_count()} CPUs, 2-node dev cluster on {args.base}.x")
        print(f"{'method':<26} {'seconds':>8} {'MiB/s':>8}")
        for name, secs in rows:
            print(f"{name:<26} {secs:8.2f} {args.size / secs:8.1f}")
    finally:
        devcluster.down(top, purge=True)
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
