"""Debian's ``ganeti-instance-debootstrap`` OS, unmodified, set up for Corral.

:func:`configure_debootstrap` installs the Debian packages
``ganeti-instance-debootstrap``, ``debootstrap`` and ``udev`` and writes the
package's own configuration file ``/etc/default/ganeti-instance-debootstrap``.
The OS scripts stay exactly as Debian ships them in
``/usr/share/ganeti/os/debootstrap`` (in Corral's OS search path after the
node's own ``srv/corral/os``); instances use it as OS ``debootstrap`` (its
only variant is ``default``; its one OS parameter ``filesystem``, ext2/3/4,
default ext4).

What the package's ``create`` does, and what the configuration sets:

* The disk: a path that is not a block device (a file disk) is attached to a
  loop device with ``losetup`` first, and detached at the end after
  ``udevadm settle`` — hence ``udev`` (only for ``udevadm``; no udev daemon
  needs to run). A raw file as ``DISK_0_PATH`` therefore works as well as a
  block device; the disk must hold at least 511 MiB.
  ``PARTITION_STYLE="none"``: the file system covers the whole disk (no
  partition table; the default ``msdos`` style needs ``kpartx`` and
  device-mapper, which Corral nodes need not have). The guest boots with
  ``root=/dev/vda`` on Corral's guest kernel (``corral.guestkernel``).
* ``mke2fs`` makes the file system (``-E nodiscard`` through shell functions
  in the sourced configuration, so disk files stay preallocated), which is
  mounted on a temporary directory, filled by ``debootstrap --arch ARCH [--include=EXTRA_PKGS]
  SUITE <dir> MIRROR``, and given the instance's host name, ``/etc/fstab``
  (root by UUID), the node's ``/etc/hosts`` and ``/etc/resolv.conf``, an
  ``/etc/network/interfaces`` with only ``lo``, and an empty root password
  (``passwd -d root``: root logs in on the console without a password).
* ``MIRROR``: the ``mirror`` argument, else the node's first Debian mirror
  from its apt sources (``/etc/apt/sources.list``, then
  ``sources.list.d/*.list`` and ``*.sources`` in name order: the first
  http(s) ``deb`` entry for ``SUITE`` with component ``main``, else the first
  http(s) URI ending in ``/debian``), else debootstrap's own default.
  ``SUITE``: the ``suite`` argument (``bookworm``). ``ARCH``: the node's
  (``dpkg --print-architecture``).
* ``EXTRA_PKGS``: ``dbus`` by default. debootstrap's default variant
  installs Debian's *required* and *important* packages, among them
  ``systemd-sysv`` and ``udev``: with ``console=ttyS0`` on the kernel command
  line systemd starts ``serial-getty@ttyS0`` by itself (a ``login:`` prompt
  on the serial console). ``dbus`` (priority *standard*, so not installed by
  debootstrap) lets ``systemd-logind`` run, which turns the ACPI power button
  (QEMU's ``system_powerdown``; the ``button`` module is loaded by Corral's
  initrd) into a clean power-off; without it the guest ignores the button.
  The kernel is Corral's guest kernel, so no ``linux-image`` package is
  needed in the guest.
* Caching: ``GENERATE_CACHE="yes"`` makes ``create`` store the debootstrapped
  tree as ``/var/cache/ganeti-instance-debootstrap/cache-SUITE-ARCH.tar``
  and unpack it on later installs instead of running debootstrap again;
  ``CLEAN_CACHE="14"`` drops caches older than 14 days. The cache file name
  does not record the mirror or the extra packages, so a changed
  configuration removes the existing cache files.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from corral import errors
from corral.process import run_command

log = logging.getLogger(__name__)

_MKFS_COMMANDS = ("mke2fs", "mkfs.ext2", "mkfs.ext3", "mkfs.ext4")
PACKAGES = ("ganeti-instance-debootstrap", "debootstrap", "udev")
DEFAULT_FILE = Path("/etc/default/ganeti-instance-debootstrap")
CACHE_DIR = Path("/var/cache/ganeti-instance-debootstrap")
OS_DIR = Path("/usr/share/ganeti/os/debootstrap")
APT_SOURCES = Path("/etc/apt/sources.list")
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")

# Extra packages of every instance: dbus, so that systemd-logind handles the
# ACPI power button (see the module docstring).
DEFAULT_EXTRA_PKGS = ("dbus",)

_APT_TIMEOUT = 1200
_APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
# The package marks DEFAULT_FILE as a conffile: keep ours on upgrades.
_DPKG_OPTS = ("-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold")
_VALUE_RE = re.compile(r"^[A-Za-z0-9._:/+,~@%=-]*$")


def configure_debootstrap(mirror: str | None = None, suite: str = "bookworm", *,
                          extra_pkgs: tuple[str, ...] = DEFAULT_EXTRA_PKGS,
                          default_file: Path = DEFAULT_FILE, cache_dir: Path = CACHE_DIR,
                          sources: tuple[Path, Path] = (APT_SOURCES, APT_SOURCES_DIR)
                          ) -> None:
    """Install ``ganeti-instance-debootstrap`` and write its configuration.

    ``mirror``: Debian mirror URL (default: the node's, see the module
    docstring); ``suite``: Debian release to install; ``extra_pkgs``: Debian
    packages added to every instance (default ``dbus``). ``default_file``, ``cache_dir`` and ``sources``
    exist for tests. Installs the packages with ``apt-get install -y`` when missing
    (running ``apt-get update`` once if apt does not know them); writes
    ``default_file`` atomically and removes the debootstrap cache when its
    content changes. Raises :class:`errors.OSError_` (``ECODE_ENVIRON``) when
    the packages cannot be installed or the file cannot be written,
    (``ECODE_INVAL``) for a malformed argument.
    """
    for name, value in (("mirror", mirror or ""), ("suite", suite),
                        ("extra_pkgs", ",".join(extra_pkgs))):
        if not _VALUE_RE.match(value) or (name == "suite" and not value):
            raise errors.OSError_(f"Invalid {name} for debootstrap: {value!r}",
                                  errors.ECODE_INVAL)
    install_packages()
    if mirror is None:
        mirror = find_debian_mirror(suite, *sources)
        if mirror is None:
            log.warning("no Debian mirror in the apt sources; debootstrap uses its default")
    content = render_config(mirror, suite, _dpkg_architecture(), extra_pkgs)
    try:
        old = default_file.read_text() if default_file.exists() else None
    except OSError as err:
        raise errors.OSError_(f"Cannot read {default_file}: {err.strerror}",
                              errors.ECODE_ENVIRON) from None
    if old == content:
        return
    _write_atomic(default_file, content)
    _drop_cache(cache_dir)
    log.info("configured ganeti-instance-debootstrap: suite %s, mirror %s", suite,
             mirror or "(debootstrap default)")


def render_config(mirror: str | None, suite: str, arch: str,
                  extra_pkgs: tuple[str, ...] = ()) -> str:
    """The text of ``/etc/default/ganeti-instance-debootstrap`` (sourced by bash)."""
    lines = [
        "# ganeti-instance-debootstrap configuration, written by Corral",
        "# (corral.debootstrap_os.configure_debootstrap): changes are overwritten.",
        f'MIRROR="{mirror or ""}"',
        f'SUITE="{suite}"',
        f'ARCH="{arch}"',
        f'EXTRA_PKGS="{",".join(extra_pkgs)}"',
        'COMPONENTS=""',
        "# the file system covers the whole disk: no partition table, no kpartx",
        'PARTITION_STYLE="none"',
        "# cache the debootstrapped tree in /var/cache/ganeti-instance-debootstrap",
        'GENERATE_CACHE="yes"',
        'CLEAN_CACHE="14"',
        "# keep preallocated disk files allocated: mke2fs would discard (punch) them,",
        "# giving back space promised to the instance (the create script sources this)",
        *[f'{cmd}() {{ command {cmd} -E nodiscard "$@"; }}' for cmd in _MKFS_COMMANDS],
    ]
    return "\n".join(lines) + "\n"


def install_packages() -> None:
    """``apt-get install -y`` the packages the debootstrap OS needs, if missing.

    Raises :class:`errors.OSError_` (``ECODE_ENVIRON``) on failure.
    """
    if not _missing_packages():
        return
    argv = ["apt-get", "install", "-y", "--no-install-recommends", *_DPKG_OPTS, *PACKAGES]
    res = run_command(argv, timeout=_APT_TIMEOUT, env=_APT_ENV)
    if res.failed:
        log.info("apt-get install failed (%s); running apt-get update", res.fail_reason())
        upd = run_command(["apt-get", "update"], timeout=_APT_TIMEOUT, env=_APT_ENV)
        if upd.failed:
            raise errors.OSError_(f"apt-get update failed: {upd.fail_reason()}: "
                                  f"{upd.output.strip()[-500:]}", errors.ECODE_ENVIRON)
        res = run_command(argv, timeout=_APT_TIMEOUT, env=_APT_ENV)
    if res.failed or _missing_packages():
        raise errors.OSError_(f"Cannot install {', '.join(PACKAGES)}: {res.fail_reason()}: "
                              f"{res.output.strip()[-500:]}", errors.ECODE_ENVIRON)
    if not (OS_DIR / "create").is_file():
        raise errors.OSError_(f"ganeti-instance-debootstrap installed but {OS_DIR}/create "
                              "is missing", errors.ECODE_ENVIRON)


def _missing_packages() -> list[str]:
    res = run_command(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\\n",
                       *PACKAGES], timeout=60)
    installed = {line.split()[0] for line in res.stdout.splitlines()
                 if line.endswith(" installed")}
    return [p for p in PACKAGES if p not in installed]


def _dpkg_architecture() -> str:
    res = run_command(["dpkg", "--print-architecture"], timeout=30)
    arch = res.stdout.strip()
    if res.failed or not arch:
        raise errors.OSError_(f"dpkg --print-architecture failed: {res.fail_reason()}",
                              errors.ECODE_ENVIRON)
    return arch


def parse_sources_list(text: str) -> list[tuple[str, str, str, list[str]]]:
    """One-line apt sources: ``[(type, uri, suite, components)]``."""
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        line = re.sub(r"\[[^\]]*\]", " ", line)
        parts = line.split()
        if len(parts) >= 3 and parts[0] in ("deb", "deb-src"):
            out.append((parts[0], parts[1], parts[2], parts[3:]))
    return out


def parse_deb822_sources(text: str) -> list[tuple[str, str, str, list[str]]]:
    """deb822 ``.sources`` stanzas: ``[(type, uri, suite, components)]``,
    one tuple per type/URI/suite combination, disabled stanzas left out."""
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for raw in stanza.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1].isspace() and key:
                fields[key] += " " + raw.strip()
                continue
            k, sep, v = raw.partition(":")
            if sep:
                key = k.strip().lower()
                fields[key] = v.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        comps = fields.get("components", "").split()
        for typ in fields.get("types", "").split():
            for uri in fields.get("uris", "").split():
                for suite in fields.get("suites", "").split():
                    out.append((typ, uri, suite, comps))
    return out


def find_debian_mirror(suite: str, sources_list: Path = APT_SOURCES,
                       sources_dir: Path = APT_SOURCES_DIR) -> str | None:
    """The node's Debian mirror for ``suite`` from its apt sources, or None.

    The first http(s) ``deb`` entry for ``suite`` with component ``main``;
    failing that, the first http(s) ``deb`` URI whose path ends in
    ``/debian``. Unreadable files are skipped.
    """
    entries: list[tuple[str, str, str, list[str]]] = []
    files = [sources_list]
    if sources_dir.is_dir():
        files += sorted(p for p in sources_dir.iterdir()
                        if p.suffix in (".list", ".sources") and p.is_file())
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        parser = parse_deb822_sources if path.suffix == ".sources" else parse_sources_list
        entries += parser(text)
    web = [(u.rstrip("/"), s, c) for t, u, s, c in entries
           if t == "deb" and u.startswith(("http://", "https://"))]
    for uri, s, comps in web:
        if s == suite and "main" in comps:
            return uri
    for uri, _s, _c in web:
        if uri.endswith("/debian"):
            return uri
    return None


def _write_atomic(path: Path, content: str) -> None:
    tmp = path.with_name(f".{path.name}.corral-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as fh:
            fh.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise errors.OSError_(f"Cannot write {path}: {err.strerror}",
                              errors.ECODE_ENVIRON) from None


def _drop_cache(cache_dir: Path) -> None:
    if not cache_dir.is_dir():
        return
    for cache in cache_dir.glob("cache-*.tar"):
        log.info("configuration changed: removing debootstrap cache %s", cache)
        cache.unlink(missing_ok=True)
