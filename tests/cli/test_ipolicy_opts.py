"""Instance policy options and commands (corral/cli/ipolicy_opts.py, gnt-cluster)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from corral import errors
from corral import ipolicy as ip
from corral.cli.ipolicy_opts import (
    format_ipolicy_info,
    ipolicy_from_options,
    parse_bounds_specs,
    parse_ratio,
)

from .conftest import FakeClient

FULL = "cpu-count=1,disk-count=1,disk-size=1G,memory-size=128M,nic-count=0,spindle-use=1"
FULL_MAX = "cpu-count=4,disk-count=4,disk-size=10G,memory-size=4G,nic-count=4,spindle-use=4"
MIN_SPEC = {"cpu-count": 1, "disk-count": 1, "disk-size": 1024, "memory-size": 128,
            "nic-count": 0, "spindle-use": 1}
MAX_SPEC = {"cpu-count": 4, "disk-count": 4, "disk-size": 10240, "memory-size": 4096,
            "nic-count": 4, "spindle-use": 4}


def test_bounds_specs_syntax() -> None:
    assert parse_bounds_specs(f"min:{FULL}/max:{FULL_MAX}") == \
        [{"min": MIN_SPEC, "max": MAX_SPEC}]
    two = parse_bounds_specs(f"min:{FULL}/max:{FULL_MAX}//max:{FULL_MAX}/min:{FULL}")
    assert len(two) == 2 and two[1] == {"min": MIN_SPEC, "max": MAX_SPEC}
    assert parse_bounds_specs("default", allow_default=True) == "default"


@pytest.mark.parametrize(("value", "match"), [
    (f"min:{FULL}", "Missing instance specification.*max"),
    (f"min:{FULL}/max:{FULL}/min:{FULL}", "Duplicated parameter 'min'"),
    (f"std:{FULL}/max:{FULL}", "Invalid key in bounds.*std"),
    (f"min:memory-size=128/max:{FULL}", "Missing parameters in ipolicy spec min: cpu-count"),
    (f"min:{FULL},ram=1/max:{FULL}", "Unknown parameter.*ram"),
    (f"min:{FULL}/max:{FULL}//", "Empty section"),
    (f"min:{FULL.replace('cpu-count=1', 'cpu-count=x')}/max:{FULL}", "cpu-count"),
    (f"min:{FULL.replace('128M', 'lots')}/max:{FULL}", "memory-size"),
    ("default", "Invalid key in bounds"),
])
def test_bounds_specs_errors(value: str, match: str) -> None:
    with pytest.raises(errors.ParameterError, match=match) as exc:
        parse_bounds_specs(value)
    assert exc.value.ecode == errors.ECODE_INVAL


def test_ratio() -> None:
    assert parse_ratio("2.5", "--x", False) == 2.5
    assert parse_ratio("Default", "--x", True) == "default"
    for bad in ("default", "fast", "0", "-1"):
        with pytest.raises(errors.ParameterError):
            parse_ratio(bad, "--x", False)


def test_policy_from_full_options() -> None:
    policy = ipolicy_from_options({
        "ipolicy_bounds_specs": f"min:{FULL}/max:{FULL_MAX}",
        "ipolicy_std_specs": "memory-size=1G,nic-count=1",
        "ipolicy_disk_templates": "file,diskless", "ipolicy_vcpu_ratio": "8",
        "ipolicy_spindle_ratio": "16", "ipolicy_memory_ratio": "1.5"})
    assert policy == {"minmax": [{"min": MIN_SPEC, "max": MAX_SPEC}],
                      "std": {"memory-size": 1024, "nic-count": 1},
                      "disk-templates": ["file", "diskless"], "vcpu-ratio": 8.0,
                      "spindle-ratio": 16.0, "memory-ratio": 1.5}
    assert ipolicy_from_options({}) == {}


def test_group_options_allow_default() -> None:
    policy = ipolicy_from_options({"ipolicy_bounds_specs": "default",
                                   "ipolicy_disk_templates": "default",
                                   "ipolicy_vcpu_ratio": "default",
                                   "ipolicy_std_specs": "memory-size=1"}, group=True)
    # std is not a group option: ignored like an option the command lacks.
    assert policy == {"minmax": "default", "disk-templates": "default",
                      "vcpu-ratio": "default"}
    assert ip.check_ipolicy_update(policy, group_policy=True) == policy


def test_split_specs() -> None:
    policy = ipolicy_from_options({"specs_mem_size": "min=64,max=1G,std=256M",
                                   "specs_nic_count": "min=0"})
    (pair,) = policy["minmax"]
    assert pair["min"] == {**ip.IPOLICY_DEFAULTS["minmax"][0]["min"], "memory-size": 64,
                           "nic-count": 0}
    assert pair["max"] == {**ip.IPOLICY_DEFAULTS["minmax"][0]["max"], "memory-size": 1024}
    assert policy["std"] == {**ip.IPOLICY_DEFAULTS["std"], "memory-size": 256}
    # The base (the cluster's current policy for modify) is what changes.
    base = ip.default_ipolicy()
    base["minmax"][0]["max"]["cpu-count"] = 32
    out = ipolicy_from_options({"specs_cpu_count": "min=2"}, base=base)
    assert out["minmax"][0]["min"]["cpu-count"] == 2
    assert out["minmax"][0]["max"]["cpu-count"] == 32 and "std" not in out


@pytest.mark.parametrize(("opts", "match"), [
    ({"specs_mem_size": "min=1", "ipolicy_std_specs": "memory-size=1"}, "cannot be specified"),
    ({"specs_mem_size": "low=1"}, "Invalid key 'low'"),
    ({"specs_cpu_count": "min=two"}, "cpu-count"),
    ({"ipolicy_std_specs": "ram=1"}, "Unknown parameter"),
])
def test_option_errors(opts: dict[str, Any], match: str) -> None:
    with pytest.raises(errors.ParameterError, match=match):
        ipolicy_from_options(opts)


def test_split_specs_need_one_bounds_pair() -> None:
    base = ip.default_ipolicy()
    base["minmax"] *= 2
    with pytest.raises(errors.ParameterError, match="one bounds pair; this one has 2"):
        ipolicy_from_options({"specs_mem_size": "max=1G"}, base=base)


def test_format_info() -> None:
    policy = ip.default_ipolicy(["file"])
    info = format_ipolicy_info(policy, policy, True)
    assert info["bounds specs"][0]["min/0"]["memory-size"] == 128
    assert info["bounds specs"][0]["max/0"]["cpu-count"] == 8
    assert info["std"]["disk-size"] == 1024
    assert info["allowed disk templates"] == "file"
    assert info["vcpu-ratio"] == "4.0" and info["memory-ratio"] == "1.0"
    group = format_ipolicy_info({"spindle-ratio": 2.0}, {**policy, "spindle-ratio": 2.0},
                                False)
    assert "std" not in group and group["spindle-ratio"] == "2.0"
    assert group["vcpu-ratio"] == "default (4.0)"
    assert group["allowed disk templates"] == "default (file)"
    assert group["bounds specs"][0]["min/0"]["nic-count"] == "default (1)"


# -- commands against the fake master -----------------------------------------------------
@pytest.fixture
def policy_client(fake_client: FakeClient, monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    info = fake_client.query_cluster_info()
    info["ipolicy"] = ip.default_ipolicy(["file", "diskless"])
    monkeypatch.setattr(fake_client, "query_cluster_info", lambda: info)
    return fake_client


def test_cluster_modify_ipolicy_options(run, policy_client: FakeClient) -> None:
    res = run("cluster", "modify", "--ipolicy-bounds-specs", f"min:{FULL}/max:{FULL_MAX}",
              "--ipolicy-vcpu-ratio", "2", "--ipolicy-disk-templates", "file")
    assert res.exit_code == 0, res.output
    op = policy_client.last_op()
    assert op["OP_ID"] == "OP_CLUSTER_SET_PARAMS"
    assert op["ipolicy"] == {"minmax": [{"min": MIN_SPEC, "max": MAX_SPEC}],
                             "vcpu-ratio": 2.0, "disk-templates": ["file"]}
    res = run("cluster", "modify", "--specs-disk-size", "max=2G")
    assert res.exit_code == 0, res.output
    (pair,) = policy_client.last_op()["ipolicy"]["minmax"]
    assert pair["max"] == {**ip.IPOLICY_DEFAULTS["minmax"][0]["max"], "disk-size": 2048}
    res = run("cluster", "modify", "--ipolicy-vcpu-ratio", "x")
    assert res.exit_code != 0 and "--ipolicy-vcpu-ratio" in res.output
    assert len(policy_client.submitted) == 2


def test_show_ispecs_cmd_and_info(run, policy_client: FakeClient) -> None:
    res = run("cluster", "show-ispecs-cmd")
    assert res.exit_code == 0, res.output
    assert res.stdout == (
        "gnt-cluster init --ipolicy-std-specs cpu-count=1,disk-count=1,disk-size=1024,"
        "memory-size=128,nic-count=1,spindle-use=1 --ipolicy-bounds-specs "
        "min:cpu-count=1,disk-count=1,disk-size=1024,memory-size=128,nic-count=1,"
        "spindle-use=1/max:cpu-count=8,disk-count=16,disk-size=1048576,"
        "memory-size=32768,nic-count=8,spindle-use=12 cluster.example\n")
    doc = yaml.safe_load(run("cluster", "info").stdout)
    block = doc["Instance policy - limits for instances"]
    assert block["allowed disk templates"] == "diskless, file"
    assert block["bounds specs"][0]["max/0"]["memory-size"] == 32768
    assert block["std"]["nic-count"] == 1 and block["spindle-ratio"] == "32.0"
