#!/usr/bin/env python3
"""Throughput of disk transfers (corral.impexp) next to cp and zstd.

Sets up two node state roots in a temporary directory (certificates from a
fresh cluster CA, like a real cluster), creates a disk image (default 1 GiB:
a quarter random data, a quarter repetitive text, half zeros, like a
partly used disk), then times:

* ``cp`` of the image (local copy, the ceiling for a disk-to-disk copy),
* ``zstd`` of the image to a file (the compression cost alone),
* a raw -> raw transfer node1 -> node2 over TLS on 127.0.2.x with each
  compression (``none``, ``gzip``, ``zstd`` by default), checksum verified.

Prints MiB/s of the image size per wall-clock second. Not a test.
Usage: ``.venv/bin/python bench/impexp_throughput.py [--size MiB] [--tools none,gzip,zstd]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from corral import crypto
from corral.backend import blockdev, impexp
from corral.objects import Disk
from corral.paths import Paths
from corral.process import run_command

MIB = 1024 * 1024
FS = "/srv/corral/file-storage"
IMPORT_HOST = "127.0.2.2"


def make_node(root: Path, name: str, ca_cert: str, ca_key: str) -> Paths:
    paths = Paths(root)
    paths.ensure_dirs()
    crypto.install_node_certs(paths, ca_cert, crypto.issue_node_certs(ca_cert, ca_key, name))
    paths.file_storage_paths.write_text(f"{FS}\n")
    return paths


def make_disk(paths: Paths, vpath: str, size_mib: int) -> dict:
    disk = Disk(dev_type="file", logical_id=["loop", vpath], size=size_mib,
                iv_name="disk/0").to_dict()
    blockdev.blockdev_create(paths, disk, size_mib, "bench", True, "", False)
    return disk


def fill_image(path: Path, size_mib: int) -> None:
    text = (b"Corral benchmark: some text that compresses well, line %d\n" * 1) * 1
    text_block = b"".join(text.replace(b"%d", str(i).encode()) for i in range(20000))
    text_block = (text_block * (MIB // len(text_block) + 1))[:MIB]
    with open(path, "r+b") as fh:
        for i in range(size_mib):
            kind = i % 4
            if kind == 0:
                fh.write(os.urandom(MIB))
            elif kind == 1:
                fh.write(text_block)
            else:
                fh.seek(MIB, os.SEEK_CUR)        # zeros (preallocated)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


def timed_command(argv: list[str], **kw: object) -> float:
    start = time.monotonic()
    res = run_command(argv, timeout=3600, **kw)  # type: ignore[arg-type]
    if res.failed:
        sys.exit(f"{argv[0]} failed: {res.fail_reason()} {res.stderr}")
    return time.monotonic() - start


def wait_done(paths: Paths, name: str) -> dict:
    while True:
        st = impexp.impexp_status(paths, [name])[0]
        if st is None:
            sys.exit(f"transfer {name} vanished")
        if st["done"]:
            return st
        time.sleep(0.05)


def transfer(n1: Paths, n2: Paths, src: dict, dst: dict, tool: str) -> float:
    opts = {"magic": "bench-" + os.urandom(8).hex(), "compress": tool,
            "expected_size": src["size"], "listen_host": IMPORT_HOST}
    start = time.monotonic()
    imp = impexp.import_start(n2, opts, None, "disk0", ["raw", dst])
    while not (impexp.impexp_status(n2, [imp])[0] or {}).get("listen_port"):
        time.sleep(0.01)
    port = impexp.impexp_status(n2, [imp])[0]["listen_port"]
    exp = impexp.export_start(n1, dict(opts), IMPORT_HOST, port, None, "disk0", ["raw", src])
    est, ist = wait_done(n1, exp), wait_done(n2, imp)
    elapsed = time.monotonic() - start
    impexp.impexp_cleanup(n1, exp)
    impexp.impexp_cleanup(n2, imp)
    if est["exit_status"] != 0 or ist["exit_status"] != 0:
        sys.exit(f"{tool}: transfer failed: {est['error_message']} / {ist['error_message']}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="image size in MiB")
    parser.add_argument("--tools", default="none,gzip,zstd")
    parser.add_argument("--dir", default=None, help="where to put the node roots")
    args = parser.parse_args()
    top = Path(tempfile.mkdtemp(prefix="corral-bench-", dir=args.dir))
    try:
        ca_cert, ca_key = crypto.create_cluster_ca("bench")
        n1 = make_node(top / "node1", "node1", ca_cert, ca_key)
        n2 = make_node(top / "node2", "node2", ca_cert, ca_key)
        src = make_disk(n1, f"{FS}/bench/src.disk0", args.size)
        src_path = n1.real(src["logical_id"][1])
        fill_image(src_path, args.size)
        digest = sha256(src_path)
        rows: list[tuple[str, float]] = []

        rows.append(("cp", timed_command(["cp", str(src_path), str(top / "copy.img")])))
        os.unlink(top / "copy.img")
        rows.append(("zstd (to file)", timed_command(
            ["zstd", "-q", "-f", "-o", str(top / "image.zst"), str(src_path)])))
        zsize = (top / "image.zst").stat().st_size
        os.unlink(top / "image.zst")

        for i, tool in enumerate(t.strip() for t in args.tools.split(",") if t.strip()):
            dst = make_disk(n2, f"{FS}/bench/dst{i}.disk0", args.size)
            elapsed = transfer(n1, n2, src, dst, tool)
            dst_path = n2.real(dst["logical_id"][1])
            if sha256(dst_path) != digest:
                sys.exit(f"{tool}: checksum mismatch after the transfer")
            os.unlink(dst_path)
            rows.append((f"impexp {tool}", elapsed))

        print(f"image: {args.size} MiB (25% random, 25% text, 50% zeros; zstd ratio "
              f"{args.size * MIB / zsize:.1f}x), {os.cpu_count()} CPUs")
        print(f"{'method':<18} {'seconds':>8} {'MiB/s':>8}")
        for name, secs in rows:
            print(f"{name:<18} {secs:8.2f} {args.size / secs:8.1f}")
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
