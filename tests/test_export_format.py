"""config.ini of exports: what Corral writes is what Ganeti 3.0 writes, and
exports written by Ganeti (also old ones) are read back correctly."""

from __future__ import annotations

import configparser
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral import constants as C
from corral import errors
from corral.export_format import (
    EXPORT_DIR,
    build_config_ini,
    check_export_name,
    disk_file_path,
    new_dir_name,
    parse_config_ini,
)

# Keys Ganeti 3.0's backend.FinalizeExport writes (besides per-device keys).
GANETI_EXPORT_KEYS = {"version", "timestamp", "source", "os", "compression"}
GANETI_INSTANCE_KEYS = {"name", "maxmem", "minmem", "memory", "vcpus", "disk_template",
                        "hypervisor", "tags", "nic_count", "disk_count"}


def encoded_instance(**kw: object) -> dict:
    inst = {
        "name": "inst1.example.com", "primary_node": "node-uuid-1", "os": "busybox+default",
        "disk_template": "file", "hypervisor": "kvm", "tags": ["a", "b"],
        "hvparams": {"kernel_path": "/boot/vmlinuz", "acpi": True, "migration_port": 8102,
                     "migration_bandwidth": 32, "serial_speed": 38400},
        "beparams": {"maxmem": 256, "minmem": 128, "vcpus": 2, "auto_balance": True,
                     "always_failover": False, "spindle_use": 1},
        "osparams": {"dhcp": "yes"}, "osparams_private": {"root_password": "secret"},
        "nics": [{"mac": "aa:00:00:11:22:33", "ip": None, "network": None, "name": "eth0",
                  "nicparams": {"mode": "bridged", "link": "br0", "vlan": ""}},
                 {"mac": "aa:00:00:11:22:34", "ip": "192.0.2.10", "network": None,
                  "name": None, "nicparams": {"mode": "routed", "link": "rt", "vlan": "5"}}],
    }
    inst.update(kw)
    return inst


DISKS = [{"uuid": "d0-uuid", "iv_name": "disk/0", "size": 1024, "name": "root"},
         {"uuid": "d1-uuid", "iv_name": "disk/1", "size": 512, "name": None}]


def ini(text: str) -> configparser.RawConfigParser:
    cfg = configparser.RawConfigParser()
    cfg.read_string(text)
    return cfg


def test_written_keys_are_ganetis() -> None:
    text = build_config_ini(encoded_instance(), DISKS, timestamp=1700000000)
    cfg = ini(text)
    assert cfg.sections() == ["export", "instance", "hypervisor", "backend", "os"]
    assert set(cfg.options("export")) == GANETI_EXPORT_KEYS
    assert dict(cfg.items("export")) == {"version": "0", "timestamp": "1700000000",
                                          "source": "node-uuid-1", "os": "busybox+default",
                                          "compression": "none"}
    ins = dict(cfg.items("instance"))
    assert GANETI_INSTANCE_KEYS <= set(ins)
    assert (ins["maxmem"], ins["minmem"], ins["memory"], ins["vcpus"]) == \
        ("256", "128", "256", "2")
    assert ins["tags"] == "a b" and ins["nic_count"] == "2" and ins["disk_count"] == "2"
    # Ganeti's "%s" % value: None -> "None", booleans capitalised.
    assert ins["nic0_ip"] == "None" and ins["nic0_network"] == "None"
    assert (ins["nic1_mode"], ins["nic1_link"], ins["nic1_vlan"]) == ("routed", "rt", "5")
    assert (ins["disk0_dump"], ins["disk0_size"], ins["disk0_ivname"]) == \
        ("d0-uuid", "1024", "disk/0")
    # Cluster-wide hypervisor parameters are not exported.
    assert dict(cfg.items("hypervisor")) == {"kernel_path": "/boot/vmlinuz", "acpi": "True",
                                             "serial_speed": "38400"}
    assert dict(cfg.items("backend"))["auto_balance"] == "True"
    assert dict(cfg.items("os")) == {"dhcp": "yes"}


def test_private_os_parameters_only_when_asked() -> None:
    text = build_config_ini(encoded_instance(), DISKS)
    assert "secret" not in text and "os_private" not in text
    cfg = ini(build_config_ini(encoded_instance(), DISKS, include_private=True))
    assert dict(cfg.items("os_private")) == {"root_password": "secret"}


def test_failed_disks_are_left_out_but_keep_their_index() -> None:
    cfg = ini(build_config_ini(encoded_instance(), [None, DISKS[1]]))
    assert cfg.get("instance", "disk_count") == "1"
    assert not cfg.has_option("instance", "disk0_dump")
    assert cfg.get("instance", "disk1_dump") == "d1-uuid"


def test_roundtrip() -> None:
    info = parse_config_ini(build_config_ini(encoded_instance(), DISKS, timestamp=5))
    assert (info.version, info.timestamp, info.os, info.source) == \
        (0, 5, "busybox+default", "node-uuid-1")
    assert (info.name, info.disk_template, info.hypervisor, info.tags) == \
        ("inst1.example.com", "file", "kvm", ["a", "b"])
    assert [(d.index, d.size, d.dump, d.iv_name, d.name) for d in info.disks] == \
        [(0, 1024, "d0-uuid", "disk/0", "root"), (1, 512, "d1-uuid", "disk/1", None)]
    nic0, nic1 = info.nics
    assert (nic0.mac, nic0.ip, nic0.network, nic0.name, nic0.mode, nic0.link, nic0.vlan) == \
        ("aa:00:00:11:22:33", None, None, "eth0", "bridged", "br0", None)
    assert (nic1.ip, nic1.vlan) == ("192.0.2.10", "5")
    assert info.beparams["maxmem"] == "256" and info.hvparams["acpi"] == "True"
    assert info.osparams == {"dhcp": "yes"} and info.osparams_private == {}


GANETI_2_16 = """\
[export]
version = 0
timestamp = 1467042346
source = 0ac2d5a1-9b65-4ea4-a9f7-0e1c4c39a6c1
os = debootstrap+default
compression = none

[instance]
name = web1.example.com
maxmem = 512
minmem = 512
memory = 512
vcpus = 1
disk_template = plain
hypervisor = xen-pvm
tags = web prod
nic0_mac = aa:00:00:45:d5:2e
nic0_ip = None
nic0_network = None
nic0_mode = bridged
nic0_link = xen-br0
nic0_vlan =
nic_count = 1
disk0_ivname = disk/0
disk0_dump = a9e1f3a7-6d3c-4f93-9c0e-2fbd0c7d9a10.disk0_data.snap
disk0_size = 10240
disk_count = 1

[hypervisor]
root_path = /dev/xvda1
kernel_path = /boot/vmlinuz-3-xenU

[backend]
spindle_use = 1
maxmem = 512
always_failover = False
minmem = 512
vcpus = 1
auto_balance = True

[os]

[os_private]

"""

GANETI_2_0 = """\
[export]
version = 0
timestamp = 1250000000
source = node1.example.com
os = debian-etch

[instance]
name = old.example.com
memory = 128
vcpus = 1
disk_template = drbd
nic0_mac = aa:00:00:00:00:01
nic0_ip = None
nic0_bridge = xen-br0
nic_count = 1
disk0_ivname = sda
disk0_dump = old.example.com.sda
disk0_size = 2048
disk_count = 1
"""


def test_reads_a_ganeti_export() -> None:
    info = parse_config_ini(GANETI_2_16)
    assert (info.os, info.disk_template, info.hypervisor, info.tags) == \
        ("debootstrap+default", "plain", "xen-pvm", ["web", "prod"])
    assert info.disks[0].dump == "a9e1f3a7-6d3c-4f93-9c0e-2fbd0c7d9a10.disk0_data.snap"
    assert info.disks[0].name is None and info.disks[0].size == 10240
    assert (info.nics[0].mac, info.nics[0].vlan, info.nics[0].link) == \
        ("aa:00:00:45:d5:2e", None, "xen-br0")
    assert info.hvparams == {"root_path": "/dev/xvda1", "kernel_path": "/boot/vmlinuz-3-xenU"}


def test_reads_an_old_style_export() -> None:
    info = parse_config_ini(GANETI_2_0)
    # No [backend] section: backend parameters come from [instance].
    assert info.beparams == {"memory": "128", "vcpus": "1"}
    assert info.hvparams is None and info.hypervisor is None
    assert info.disks[0].dump == "old.example.com.sda"


@pytest.mark.parametrize("text, ecode", [
    ("not an ini file", errors.ECODE_INVAL),
    ("[export]\nversion = 0\n", errors.ECODE_INVAL),
    ("[instance]\nname = x\n", errors.ECODE_INVAL),
    ("[export]\n[instance]\nname = x\n", errors.ECODE_INVAL),
    ("[export]\nversion = 1\n[instance]\nname = x\n", errors.ECODE_ENVIRON),
    ("[export]\nversion = zero\n[instance]\nname = x\n", errors.ECODE_INVAL),
    ("[export]\nversion = 0\n[instance]\ndisk0_size = big\n", errors.ECODE_INVAL),
])
def test_corrupt_configs_are_refused(text: str, ecode: str) -> None:
    with pytest.raises(errors.OpPrereqError) as exc:
        parse_config_ini(text)
    assert exc.value.ecode == ecode


@pytest.mark.parametrize("name", ["inst1", "web1.example.com", "a-b_c+d"])
def test_export_names(name: str) -> None:
    assert check_export_name(name) == name
    assert new_dir_name(name) == f"{name}.new"
    assert disk_file_path(name, "0a-1b") == f"{EXPORT_DIR}/{name}.new/0a-1b"


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "a/b", "../x", "a\x00", None, 3])
def test_bad_export_names(name: object) -> None:
    with pytest.raises(errors.OpPrereqError):
        check_export_name(name)


def test_bad_disk_uuid() -> None:
    with pytest.raises(errors.OpPrereqError):
        disk_file_path("inst1", "../../etc")


_text = st.text(alphabet=string.ascii_letters + string.digits + "-_./:+ ", max_size=30)


@settings(max_examples=100, deadline=None)
@given(name=st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True),
       tags=st.lists(st.from_regex(r"[a-z0-9:]{1,8}", fullmatch=True), max_size=4),
       osparams=st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
                                _text.map(str.strip), max_size=4),
       sizes=st.lists(st.integers(1, 1 << 20), max_size=C.MAX_DISKS),
       nic_ips=st.lists(st.one_of(st.none(), st.ip_addresses(v=4).map(str)),
                        max_size=C.MAX_NICS))
def test_roundtrip_property(name: str, tags: list[str], osparams: dict[str, str],
                            sizes: list[int], nic_ips: list[str | None]) -> None:
    inst = encoded_instance(name=name, tags=tags, osparams=osparams, nics=[
        {"mac": f"aa:00:00:00:00:{i:02x}", "ip": ip, "network": None, "name": None,
         "nicparams": {"mode": "bridged", "link": "br0", "vlan": ""}}
        for i, ip in enumerate(nic_ips)])
    disks = [{"uuid": f"u{i}", "iv_name": f"disk/{i}", "size": s, "name": None}
             for i, s in enumerate(sizes)]
    info = parse_config_ini(build_config_ini(inst, disks))
    assert info.name == name and info.tags == tags
    assert info.osparams == {k: v for k, v in osparams.items()}
    assert [d.size for d in info.disks] == sizes
    assert [d.dump for d in info.disks] == [f"u{i}" for i in range(len(sizes))]
    assert [n.ip for n in info.nics] == nic_ips
