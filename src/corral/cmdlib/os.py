"""Logical unit OP_OS_DIAGNOSE: OS definitions as seen by all nodes.

Mirrors ``ganeti.cmdlib.operating_system.LUOsDiagnose``: each online,
vm-capable node reports its OS definitions (``os_diagnose`` RPC); an OS is
valid when it is valid on every such node, and its variants, parameters and
API versions are the ones common to all nodes.
"""

from __future__ import annotations

from typing import Any


from corral import errors
from corral.cmdlib.base import FeedbackFn, QueryLU

OS_FIELDS = ("name", "valid", "variants", "parameters", "api_versions", "node_status",
             "hidden", "blacklisted", "trusted", "os_hvp", "osparams")


class LUOsDiagnose(QueryLU):
    def check_arguments(self) -> None:
        unknown = [f for f in self.op.output_fields if f not in OS_FIELDS]
        if unknown:
            raise errors.OpPrereqError(f"Unknown output fields: {', '.join(unknown)}",
                                       errors.ECODE_INVAL)

    def expand_names(self) -> None:
        self.needed_locks = {}

    def exec(self, feedback_fn: FeedbackFn) -> list[list[Any]]:
        cluster = self.cfg.get_cluster()
        nodes = [n for n in self.cfg.get_node_list() if not n.offline and n.vm_capable]
        results = self.rpc.call("os_diagnose", [n.uuid for n in nodes], [])
        per_os: dict[str, dict[str, list[Any]]] = {}
        answered: list[str] = []
        for node in nodes:
            res = results[node.uuid]
            if res.fail_msg:
                self.log_warning(f"Can't get the OS list of node {node.name}: {res.fail_msg}")
                continue
            answered.append(node.name)
            for row in res.payload or []:
                name, path, status, diag, variants, params, api, trusted = row
                per_os.setdefault(name, {}).setdefault(node.name, []).append(
                    [path, status, diag, variants, params, api, trusted])
        rows: list[list[Any]] = []
        wanted = set(self.op.names)
        for name in sorted(per_os):
            if wanted and name not in wanted:
                continue
            node_status = per_os[name]
            # Valid only if the first definition found is valid on every node.
            valid = all(node_status.get(n) and node_status[n][0][1] for n in answered)
            variants: set[str] | None = None
            params: set[tuple[str, str]] | None = None
            api: set[int] | None = None
            trusted = True
            for entries in node_status.values():
                _p, ok, _d, n_var, n_par, n_api, n_trusted = entries[0]
                if not ok:
                    continue
                variants = set(n_var) if variants is None else variants & set(n_var)
                pset = {tuple(p) for p in n_par}
                params = pset if params is None else params & pset
                api = set(n_api) if api is None else api & set(n_api)
                trusted = trusted and bool(n_trusted)
            values = {
                "name": name,
                "valid": valid,
                "variants": sorted(variants or []),
                "parameters": sorted([list(p) for p in params or []]),
                "api_versions": sorted(api or []),
                "node_status": node_status,
                "hidden": name in cluster.hidden_os,
                "blacklisted": name in cluster.blacklisted_os,
                "trusted": trusted,
                "os_hvp": cluster.os_hvp.get(name, {}),
                "osparams": cluster.osparams.get(name, {}),
            }
            rows.append([values[f] for f in self.op.output_fields])
        return rows


def os_names_with_variants(rows: list[list[Any]]) -> list[str]:
    """``name`` and ``name+variant`` strings for valid OSes (RAPI ``/2/os``).

    ``rows`` are OP_OS_DIAGNOSE results for fields ``[name, valid, variants]``.
    """
    names: list[str] = []
    for name, valid, variants in rows:
        if not valid:
            continue
        if variants:
            names.extend(f"{name}+{v}" for v in variants)
        else:
            names.append(name)
    return names



