"""corral.debootstrap_os without installing anything: apt sources parsing,
mirror choice, the configuration file, cache invalidation, bad arguments."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral import debootstrap_os as dbo
from corral import errors
from corral.process import run_command

MIB = 1024 * 1024

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
"""


def write_sources(tmp_path: Path, main: str = "", **files: str) -> tuple[Path, Path]:
    sources_list = tmp_path / "sources.list"
    sources_list.write_text(main)
    d = tmp_path / "sources.list.d"
    d.mkdir()
    for name, text in files.items():
        (d / name.replace("_", ".")).write_text(text)
    return sources_list, d


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    sources = write_sources(tmp_path, debian_sources=DEB822,
                            google_list_disabled="deb https://example.com/apt x main\n")
    assert dbo.find_debian_mirror("bookworm", *sources) == "http://deb.debian.org/debian"
    # Another suite: the first .../debian URI.
    assert dbo.find_debian_mirror("trixie", *sources) == "http://deb.debian.org/debian"


def test_mirror_from_one_line_sources(tmp_path: Path) -> None:
    main = ("# a comment\n"
            "deb-src http://src.example.org/debian bookworm main\n"
            "deb [arch=amd64 signed-by=/k.gpg] cdrom:/media bookworm main\n"
            "deb [signed-by=/k.gpg] https://mirror.example.net/debian/ bookworm main contrib\n"
            "deb http://other.example.net/debian bookworm main\n")
    sources = write_sources(tmp_path, main)
    assert dbo.find_debian_mirror("bookworm", *sources) == "https://mirror.example.net/debian"


def test_mirror_skips_disabled_and_non_main(tmp_path: Path) -> None:
    disabled = DEB822.replace("Types: deb\n#", "Enabled: no\nTypes: deb\n#", 1)
    sources = write_sources(tmp_path, "deb http://x.example/ubuntu bookworm universe\n",
                            a_sources=disabled)
    assert dbo.find_debian_mirror("bookworm", *sources) is None
    other = tmp_path / "other"
    other.mkdir()
    sources2 = write_sources(other, "deb http://x.example/debian stable main\n")
    assert dbo.find_debian_mirror("bookworm", *sources2) == "http://x.example/debian"


def test_render_config() -> None:
    text = dbo.render_config("http://deb.debian.org/debian", "bookworm", "amd64", ("dbus",))
    values = dict(line.split("=", 1) for line in text.splitlines()
                  if line and not line.startswith("#") and "()" not in line)
    assert values == {"MIRROR": '"http://deb.debian.org/debian"', "SUITE": '"bookworm"',
                      "ARCH": '"amd64"', "EXTRA_PKGS": '"dbus"', "COMPONENTS": '""',
                      "PARTITION_STYLE": '"none"', "GENERATE_CACHE": '"yes"',
                      "CLEAN_CACHE": '"14"'}
    assert 'MIRROR=""' in dbo.render_config(None, "bookworm", "amd64")


def test_config_makes_mke2fs_keep_disk_files_allocated(tmp_path: Path) -> None:
    """The create script sources the configuration, then runs mke2fs on the
    disk: the file must stay fully allocated (no discard)."""
    config = tmp_path / "default"
    config.write_text(dbo.render_config(None, "bookworm", "amd64"))
    disk = tmp_path / "disk0"
    with open(disk, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, 64 * MIB)
    for cmd in ("mke2fs -t ext4", "mkfs.ext4", "mkfs.ext3"):
        res = run_command(["bash", "-c", f'. "$1" && {cmd} -Fq "$2"', "sh", str(config),
                           str(disk)], timeout=60)
        assert not res.failed, res.output
        st = disk.stat()
        assert st.st_size == 64 * MIB and st.st_blocks * 512 >= st.st_size, cmd
    # Without the configuration, mke2fs punches the file (what the functions prevent).
    res = run_command(["mkfs.ext4", "-Fq", str(disk)], timeout=60)
    assert not res.failed and disk.stat().st_blocks * 512 < 64 * MIB


def test_configure_writes_file_and_drops_stale_cache(tmp_path: Path) -> None:
    """Needs the packages installed already (installs them otherwise)."""
    default_file = tmp_path / "default"
    cache = tmp_path / "cache"
    cache.mkdir()
    tar = cache / "cache-bookworm-amd64.tar"
    tar.write_text("old tree")
    sources = write_sources(tmp_path, debian_sources=DEB822)
    dbo.configure_debootstrap(default_file=default_file, cache_dir=cache, sources=sources)
    assert 'MIRROR="http://deb.debian.org/debian"' in default_file.read_text()
    assert 'EXTRA_PKGS="dbus"' in default_file.read_text()
    assert not tar.exists()                                     # config changed
    tar.write_text("new tree")
    dbo.configure_debootstrap(default_file=default_file, cache_dir=cache, sources=sources)
    assert tar.exists()                                         # unchanged: cache kept
    dbo.configure_debootstrap("http://mirror.example.org/debian", "trixie",
                              default_file=default_file, cache_dir=cache, sources=sources)
    text = default_file.read_text()
    assert 'MIRROR="http://mirror.example.org/debian"' in text and 'SUITE="trixie"' in text
    assert not tar.exists()


@pytest.mark.parametrize("kwargs", [{"mirror": "http://x/debian; rm -rf /"},
                                    {"suite": ""}, {"suite": "bookworm\"x"},
                                    {"extra_pkgs": ("dbus", "$(reboot)")}])
def test_configure_refuses_malformed_arguments(tmp_path: Path, kwargs: dict) -> None:
    default_file = tmp_path / "default"
    with pytest.raises(errors.OSError_, match="Invalid") as exc:
        dbo.configure_debootstrap(default_file=default_file, cache_dir=tmp_path, **kwargs)
    assert exc.value.ecode == errors.ECODE_INVAL
    assert not default_file.exists()


@given(st.text(max_size=400))
def test_source_parsers_never_crash(text: str) -> None:
    for parser in (dbo.parse_sources_list, dbo.parse_deb822_sources):
        for typ, uri, suite, comps in parser(text):
            assert typ and uri and suite and isinstance(comps, list)
