"""Instance policies (corral/ipolicy.py): defaults, fill, validation, violations."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral import errors
from corral import ipolicy as ip

PARAMS = ip.ISPECS_PARAMETERS


def _spec(**values: int) -> dict[str, int]:
    spec = dict(ip.IPOLICY_DEFAULTS["std"])
    spec.update({k.replace("_", "-"): v for k, v in values.items()})
    return spec


def _inval(fn: Any, *args: Any, match: str, **kwargs: Any) -> errors.OpPrereqError:
    with pytest.raises(errors.OpPrereqError, match=match) as exc:
        fn(*args, **kwargs)
    assert exc.value.ecode == errors.ECODE_INVAL
    return exc.value


# -- defaults and inheritance -----------------------------------------------------------
def test_defaults_are_ganetis() -> None:
    policy = ip.default_ipolicy()
    assert set(policy) == ip.IPOLICY_ALL_KEYS
    (pair,) = policy["minmax"]
    assert pair["min"] == {"memory-size": 128, "cpu-count": 1, "disk-count": 1,
                           "disk-size": 1024, "nic-count": 1, "spindle-use": 1}
    assert pair["max"] == {"memory-size": 32768, "cpu-count": 8, "disk-count": 16,
                           "disk-size": 1048576, "nic-count": 8, "spindle-use": 12}
    assert policy["std"] == pair["min"]
    assert policy["disk-templates"] == ["blockdev", "diskless", "drbd", "ext", "file",
                                        "gluster", "plain", "rbd", "sharedfile"]
    assert (policy["vcpu-ratio"], policy["spindle-ratio"], policy["memory-ratio"]) == \
        (4.0, 32.0, 1.0)
    # A copy: changing it does not change the defaults.
    pair["min"]["memory-size"] = 1
    assert ip.IPOLICY_DEFAULTS["minmax"][0]["min"]["memory-size"] == 128
    assert ip.check_ipolicy(ip.default_ipolicy(), check_std=True) == ip.IPOLICY_DEFAULTS


def test_default_restricted_to_enabled_templates() -> None:
    assert ip.default_ipolicy(["sharedfile", "file", "diskless"])["disk-templates"] == \
        ["diskless", "file", "sharedfile"]


def test_cluster_ipolicy_of_old_config_and_of_stored_one() -> None:
    # A configuration without a policy gets the defaults for its templates.
    filled = ip.cluster_ipolicy({}, ["file", "diskless"])
    assert filled["disk-templates"] == ["diskless", "file"]
    assert filled["minmax"] == ip.IPOLICY_DEFAULTS["minmax"]
    stored = ip.default_ipolicy(["file"])
    stored["vcpu-ratio"] = 2.0
    assert ip.cluster_ipolicy(stored, ["file", "diskless"]) == stored


def test_group_overrides_as_fill_ipolicy() -> None:
    cluster = ip.default_ipolicy(["file", "diskless"])
    bounds = [{"min": _spec(memory_size=512), "max": _spec(memory_size=1024)}]
    group = {"minmax": bounds, "std": {"memory-size": 768}, "vcpu-ratio": 8.0,
             "disk-templates": ["file"]}
    filled = ip.filled_ipolicy(cluster, group)
    assert filled["minmax"] == bounds                    # whole minmax replaced
    assert filled["std"] == {**cluster["std"], "memory-size": 768}   # std per value
    assert filled["vcpu-ratio"] == 8.0 and filled["spindle-ratio"] == 32.0
    assert filled["disk-templates"] == ["file"]
    assert ip.filled_ipolicy(cluster, {}) == cluster
    assert group["std"] == {"memory-size": 768}           # inputs unchanged
    assert cluster["std"]["memory-size"] == 128


def test_group_ipolicy_from_objects() -> None:
    class Obj:
        def __init__(self, **kw: Any) -> None:
            self.__dict__.update(kw)

    cluster = Obj(ipolicy={}, enabled_disk_templates=["file"])
    group = Obj(ipolicy={"spindle-ratio": 2.0})
    assert ip.group_ipolicy(cluster, group)["spindle-ratio"] == 2.0
    assert ip.group_ipolicy(cluster, None)["disk-templates"] == ["file"]


# -- validation -------------------------------------------------------------------------
@pytest.mark.parametrize(("policy", "match"), [
    ({"foo": 1}, "unknown key"),
    ({"minmax": []}, "empty minmax"),
    ({"minmax": {"min": {}}}, "must be a list"),
    ({"minmax": [{"min": _spec()}]}, "missing: max"),
    ({"minmax": [{"min": _spec(), "max": _spec(), "std": _spec()}]}, "unknown: std"),
    ({"minmax": [{"min": {"memory-size": 1}, "max": _spec()}]},
     "missing parameter.*min/0.*cpu-count"),
    ({"minmax": [{"min": _spec(memory_size=256), "max": _spec(memory_size=128)}]},
     "memory-size in minmax/0 are inverted: min 256 > max 128"),
    ({"minmax": [{"min": {**_spec(), "ram": 1}, "max": _spec()}]}, "unknown parameter.*ram"),
    ({"minmax": [{"min": _spec(cpu_count=-1), "max": _spec()}]}, "must not be negative"),
    ({"minmax": [{"min": {**_spec(), "cpu-count": "x"}, "max": _spec()}]}, "integer"),
    ({"minmax": [{"min": {**_spec(), "cpu-count": True}, "max": _spec()}]}, "integer"),
    ({"disk-templates": []}, "at least one disk template"),
    ({"disk-templates": ["file", "floppy"]}, "unknown disk template.*floppy"),
    ({"disk-templates": "file"}, "must be a list"),
    ({"vcpu-ratio": "fast"}, "vcpu-ratio must be a number"),
    ({"spindle-ratio": 0}, "positive"),
    ({"memory-ratio": float("nan")}, "positive"),
    ({"std": {"nic-count": 1}}, None),
])
def test_check_ipolicy_refusals(policy: dict[str, Any], match: str | None) -> None:
    if match is None:         # a partial std is fine without check_std...
        assert ip.check_ipolicy(policy, check_std=False) == policy
        _inval(ip.check_ipolicy, policy, check_std=True, match="missing")
        return
    _inval(ip.check_ipolicy, policy, check_std=False, match=match)


def test_std_must_be_within_one_bounds_pair() -> None:
    policy = ip.default_ipolicy()
    policy["std"] = _spec(memory_size=64)
    err = _inval(ip.check_ipolicy, policy, check_std=True, match="std specs are not within")
    assert "memory-size=64 not in [128, 32768]" in err.message
    # Fine as soon as one pair holds it.
    policy["minmax"].append({"min": _spec(memory_size=32), "max": _spec(memory_size=64)})
    assert ip.check_ipolicy(policy, check_std=True)["std"]["memory-size"] == 64


def test_check_normalises_values() -> None:
    policy = {"minmax": [{"min": {k: str(v) for k, v in _spec().items()},
                          "max": {**_spec(), "disk-size": 2048.0}}],
              "vcpu-ratio": "2", "disk-templates": ("file", "file", "diskless")}
    out = ip.check_ipolicy(policy, check_std=False)
    assert out["minmax"][0]["min"]["memory-size"] == 128
    assert isinstance(out["minmax"][0]["max"]["disk-size"], int)
    assert out["vcpu-ratio"] == 2.0 and out["disk-templates"] == ["file", "diskless"]


def test_disk_templates_versus_enabled() -> None:
    ip.check_ipolicy_vs_disk_templates({"disk-templates": ["file"]}, ["file", "diskless"])
    _inval(ip.check_ipolicy_vs_disk_templates, {"disk-templates": ["plain", "file"]},
           ["file"], match="allowed by the ipolicy, but not enabled on the cluster: plain")


# -- updates (GetUpdatedIPolicy) ----------------------------------------------------------
def test_cluster_update() -> None:
    old = ip.default_ipolicy(["file"])
    new = ip.updated_ipolicy(old, {"std": {"memory-size": "256"}, "vcpu-ratio": 2})
    assert new["std"] == {**old["std"], "memory-size": 256}
    assert new["vcpu-ratio"] == 2.0 and new["minmax"] == old["minmax"]
    assert old["vcpu-ratio"] == 4.0
    _inval(ip.updated_ipolicy, old, {"vcpu-ratio": "default"}, match="cannot unset")
    _inval(ip.updated_ipolicy, old, {"minmax": []}, match="cannot unset")
    _inval(ip.updated_ipolicy, old, {"std": {"memory-size": 65536}},
           match="std specs are not within")
    _inval(ip.updated_ipolicy, old, {"bogus": 1}, match="unknown key bogus")


def test_group_update_and_reset() -> None:
    bounds = [{"min": _spec(), "max": _spec(memory_size=4096)}]
    new = ip.updated_ipolicy({}, {"minmax": bounds, "spindle-ratio": 16}, group_policy=True)
    assert new == {"minmax": bounds, "spindle-ratio": 16.0}
    assert ip.updated_ipolicy(new, {"minmax": "default", "spindle-ratio": ["default"]},
                              group_policy=True) == {}
    _inval(ip.updated_ipolicy, {}, {"std": {"memory-size": 128}}, group_policy=True,
           match="std cannot appear in group")
    assert ip.check_ipolicy_update({"disk-templates": "default"}, group_policy=True) == \
        {"disk-templates": "default"}


def test_group_ipolicy_update_checks_filled_policy() -> None:
    cluster = ip.default_ipolicy(["file", "diskless"])
    new = ip.group_ipolicy_update(cluster, {}, {"disk-templates": ["file"]},
                                  ["file", "diskless"])
    assert new == {"disk-templates": ["file"]}
    _inval(ip.group_ipolicy_update, cluster, {}, {"disk-templates": ["plain"]},
           ["file", "diskless"], match="not enabled on the cluster: plain")


# -- violations -------------------------------------------------------------------------
def _inst(mem: int = 128, cpus: int = 1, disks: tuple[int, ...] = (1024,), nics: int = 1,
          spindles: int = 1) -> dict[str, Any]:
    return {"memory-size": mem, "cpu-count": cpus, "disk-count": len(disks),
            "disk-size": list(disks), "nic-count": nics, "spindle-use": spindles}


def test_spec_violations() -> None:
    policy = ip.default_ipolicy(["file", "diskless"])
    assert ip.spec_violations(policy, _inst(), ["file"]) == []
    found = ip.spec_violations(policy, _inst(mem=64, cpus=9, disks=(2048, 10), nics=0),
                               ["file", "file"])
    assert found == ["memory-size value 64 is not in range [128, 32768]",
                     "cpu-count value 9 is not in range [1, 8]",
                     "nic-count value 0 is not in range [1, 8]",
                     "disk-size/1 value 10 is not in range [1024, 1048576]"]
    assert ip.spec_violations(policy, _inst(), ["plain"]) == [
        "Disk template plain is not allowed (allowed templates: diskless, file)"]
    # Diskless: the disk count is not checked, the template is.
    assert ip.spec_violations(policy, _inst(disks=()), []) == []
    policy["disk-templates"] = ["file"]
    assert ip.spec_violations(policy, _inst(disks=()), []) == [
        "Disk template diskless is not allowed (allowed templates: file)"]
    # Values not given (None, or missing) are not checked.
    assert ip.spec_violations(policy, {"disk-count": 1, "disk-size": [1024]}, ["file"]) == []


def test_spec_violations_pick_best_bounds_pair() -> None:
    policy = ip.default_ipolicy()
    policy["minmax"] = [{"min": _spec(), "max": _spec(memory_size=1024)},
                        {"min": _spec(memory_size=4096, cpu_count=4),
                         "max": _spec(memory_size=8192, cpu_count=8)}]
    assert ip.spec_violations(policy, _inst(mem=512), ["file"]) == []
    assert ip.spec_violations(policy, _inst(mem=6000, cpus=4), ["file"]) == []
    assert ip.spec_violations(policy, _inst(mem=2048), ["file"]) == [
        "memory-size value 2048 is not in range [128, 1024]"]


# -- command line -----------------------------------------------------------------------
def test_ipolicy_command_args() -> None:
    policy = ip.default_ipolicy()
    args = ip.ipolicy_command_args(policy, is_group=False)
    assert args == (" --ipolicy-std-specs cpu-count=1,disk-count=1,disk-size=1024,"
                    "memory-size=128,nic-count=1,spindle-use=1"
                    " --ipolicy-bounds-specs min:cpu-count=1,disk-count=1,disk-size=1024,"
                    "memory-size=128,nic-count=1,spindle-use=1/max:cpu-count=8,"
                    "disk-count=16,disk-size=1048576,memory-size=32768,nic-count=8,"
                    "spindle-use=12")
    policy["minmax"].append(copy.deepcopy(policy["minmax"][0]))
    group_args = ip.ipolicy_command_args(policy, is_group=True)
    assert "std" not in group_args and group_args.count("//min:") == 1
    assert ip.ipolicy_command_args({}, is_group=True) == ""


# -- properties -------------------------------------------------------------------------
_values = st.integers(min_value=0, max_value=1 << 20)


@st.composite
def _bounds(draw: Any) -> dict[str, dict[str, int]]:
    low = {p: draw(_values) for p in PARAMS}
    high = {p: low[p] + draw(_values) for p in PARAMS}
    return {"min": low, "max": high}


@st.composite
def _group_policies(draw: Any) -> dict[str, Any]:
    policy: dict[str, Any] = {}
    if draw(st.booleans()):
        policy["minmax"] = draw(st.lists(_bounds(), min_size=1, max_size=3))
    if draw(st.booleans()):
        policy["disk-templates"] = draw(st.lists(st.sampled_from(ip.IPOLICY_DEFAULTS[
            "disk-templates"]), min_size=1, unique=True))
    for key in ip.IPOLICY_PARAMETERS:
        if draw(st.booleans()):
            policy[key] = draw(st.floats(min_value=0.01, max_value=1e6))
    return policy


@given(_group_policies())
def test_fill_properties(group: dict[str, Any]) -> None:
    cluster = ip.default_ipolicy()
    filled = ip.filled_ipolicy(cluster, group)
    assert set(filled) == ip.IPOLICY_ALL_KEYS
    for key in ip.IPOLICY_ALL_KEYS:
        assert filled[key] == group.get(key, cluster[key])
    assert ip.filled_ipolicy(cluster, filled) == filled         # idempotent
    assert ip.check_ipolicy(group, check_std=False) == group     # valid stays as is
    assert ip.check_ipolicy(filled, check_std=False) == filled


@given(_bounds(), st.sampled_from(PARAMS), st.integers(min_value=1, max_value=100))
def test_inverted_bounds_refused(pair: dict[str, dict[str, int]], param: str,
                                 delta: int) -> None:
    pair["min"][param] = pair["max"][param] + delta
    _inval(ip.check_ipolicy, {"minmax": [pair]}, check_std=False,
           match=f"{param} in minmax/0 are inverted")


@given(_bounds(), st.dictionaries(st.sampled_from(PARAMS), _values))
def test_violations_match_bounds(pair: dict[str, dict[str, int]],
                                 values: dict[str, int]) -> None:
    policy = {**ip.default_ipolicy(), "minmax": [pair]}
    spec = {k: v for k, v in values.items() if k not in ("disk-count", "disk-size")}
    found = ip.spec_violations(policy, spec, [])
    expected = {p for p, v in spec.items() if not pair["min"][p] <= v <= pair["max"][p]}
    assert {msg.split(" ", 1)[0] for msg in found} == expected
