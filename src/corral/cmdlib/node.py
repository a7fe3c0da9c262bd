"""Logical units for nodes: add (join or re-add), remove, modify, query.

Mirrors ``ganeti.cmdlib.node``. Adding a node needs no SSH: the new node runs
``corral-noded --join-token TOKEN`` (token from ``gnt-cluster join-token``)
and the master proves the token bound to the node's TLS certificate
(``noded.join``); the node then receives its certificates and accepts only
the cluster's client certificates.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from corral import constants as C
from corral import crypto, errors
from corral.cmdlib.base import FeedbackFn, LogicalUnit, QueryLU
from corral.cmdlib.instance_utils import resolve_hostname
from corral.cmdlib.common import (build_ssconf, distribute_cluster_files,
                                  file_storage_dirs_in_use, storage_dir_problems,
                                  validate_params)
from corral.noded.join import join_node
from corral.objects import Node, new_uuid
from corral.query import field_definitions, gather_live_data, needs_live_data, query
from corral.rpc import NodeClient


class LUNodeAdd(LogicalUnit):
    """Add a new node, or re-add a known one (``readd``)."""

    HPATH = "node-add"
    HTYPE = C.HTYPE_NODE

    def check_arguments(self) -> None:
        op = self.op
        for attr in ("primary_ip", "secondary_ip"):
            value = getattr(op, attr)
            if value:
                try:
                    ipaddress.IPv4Address(value)
                except ValueError:
                    raise errors.OpPrereqError(f"Invalid {attr} '{value}'",
                                               errors.ECODE_INVAL) from None
        if op.ndparams:
            op.ndparams = validate_params(op.ndparams, C.NDS_PARAMETER_TYPES, "node")

    def expand_names(self) -> None:
        self.needed_locks = {}      # the exclusive BGL serializes node changes

    def build_hooks_env(self) -> dict[str, Any]:
        return {"OP_TARGET": self.op.node_name, "NODE_NAME": self.op.node_name,
                "NODE_PIP": self.primary_ip, "NODE_SIP": self.secondary_ip,
                "MASTER_CAPABLE": self.new_node.master_capable,
                "VM_CAPABLE": self.new_node.vm_capable}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        existing = [n.uuid for n in self.cfg.get_node_list()
                    if n.uuid != self.new_node.uuid and not n.offline]
        return existing, existing + [self.new_node.uuid]

    def check_prereq(self) -> None:
        op = self.op
        existing = self.cfg.get_node_by_name(op.node_name)
        if op.readd and existing is None:
            raise errors.OpPrereqError(f"Node {op.node_name} is not in the configuration",
                                       errors.ECODE_NOENT)
        if not op.readd and existing is not None:
            raise errors.OpPrereqError(f"Node {op.node_name} is already in the configuration",
                                       errors.ECODE_EXISTS)
        if op.primary_ip:
            self.primary_ip = op.primary_ip
        elif existing is not None:
            self.primary_ip = existing.primary_ip
        else:
            self.primary_ip = resolve_hostname(op.node_name)[1]
        self.secondary_ip = op.secondary_ip or self.primary_ip
        for node in self.cfg.get_node_list():
            if node.name != op.node_name and \
                    self.primary_ip in (node.primary_ip, node.secondary_ip):
                raise errors.OpPrereqError(
                    f"The primary IP {self.primary_ip} is already used by node {node.name}",
                    errors.ECODE_NOTUNIQUE)
        if op.group:
            group_uuid = self.cfg.expand_nodegroup(op.group).uuid
        elif existing is not None:
            group_uuid = existing.group
        else:
            # Ganeti's LookupNodeGroup(None): the only group, else one must be named.
            groups = list(self.cfg.get_nodegroups())
            if len(groups) != 1:
                raise errors.OpPrereqError(
                    "More than one node group exists. Target group must be specified "
                    "explicitly.", errors.ECODE_INVAL)
            group_uuid = groups[0]
        port = op.noded_port or (existing.noded_port if existing else C.DEFAULT_NODED_PORT)
        if existing is not None:
            node = existing.model_copy(deep=True)
            node.primary_ip, node.secondary_ip, node.noded_port = \
                self.primary_ip, self.secondary_ip, port
            node.group = group_uuid
            node.offline = False
            node.drained = False
        else:
            cluster = self.cfg.get_cluster()
            candidates = len(self.cfg.get_master_candidates())
            node = Node(uuid=new_uuid(), name=op.node_name, primary_ip=self.primary_ip,
                        secondary_ip=self.secondary_ip, group=group_uuid, noded_port=port,
                        master_candidate=candidates < cluster.candidate_pool_size)
        if op.master_capable is not None:
            node.master_capable = op.master_capable
        if op.vm_capable is not None:
            node.vm_capable = op.vm_capable
        if not node.master_capable:
            node.master_candidate = False
        if op.ndparams:
            node.ndparams.update({k: v for k, v in op.ndparams.items() if v is not None})
        self.new_node = node
        self.existing = existing

    def _node_client(self) -> NodeClient:
        return NodeClient(self.primary_ip, self.new_node.noded_port, self.paths,
                          name=self.new_node.name)

    def _join(self, feedback_fn: FeedbackFn) -> None:
        ca_cert, ca_key = crypto.read_cluster_ca(self.paths)
        feedback_fn(f"Joining node {self.new_node.name} ({self.primary_ip}) to the cluster")
        join_node(self.paths, self.primary_ip, self.new_node.noded_port,
                  crypto.JoinTokenStore(self.paths), self.new_node.name,
                  self.new_node.uuid, self.cfg.get_cluster().cluster_name, ca_cert, ca_key,
                  build_ssconf(self.cfg))

    def exec(self, feedback_fn: FeedbackFn) -> None:
        node = self.new_node
        with self._node_client() as client:
            version = client.call("version", [], timeout=10)
            if version.fail_msg:
                # Not (or no longer) a member: it must be waiting with a join token.
                self._join(feedback_fn)
                version = client.call("version", [], timeout=10)
        version.raise_for(f"Node {node.name} does not answer", prereq=True,
                          ecode=errors.ECODE_ENVIRON)
        if version.payload != C.PROTOCOL_VERSION:
            raise errors.OpExecError(
                f"Node {node.name} speaks protocol {version.payload}, the master "
                f"{C.PROTOCOL_VERSION}")
        if self.existing is not None:
            self.cfg.commit(update=[node])
        else:
            self.cfg.commit(add=[node])
        feedback_fn(f"Node {node.name} added, distributing cluster files")
        distribute_cluster_files(self, only_online=True, full_config=True)
        # The node's allowed file storage paths are its administrator's: warn
        # now (verify reports it too) instead of writing them.
        dirs = file_storage_dirs_in_use(self.cfg.get_cluster())
        for problems in storage_dir_problems(self, dirs, [node.uuid]).values():
            self.log_warning(f"Node {node.name} does not accept the cluster's file storage "
                             f"directories: {problems}")


class LUNodeRemove(LogicalUnit):
    """Remove an empty node; it forgets the cluster (node_leave_cluster)."""

    HPATH = "node-remove"
    HTYPE = C.HTYPE_NODE

    def expand_names(self) -> None:
        node = self.cfg.expand_node(self.op.node_name)
        self.op.node_name, self.op.node_uuid = node.name, node.uuid
        self.needed_locks = {C.LEVEL_NODE: [node.uuid]}

    def build_hooks_env(self) -> dict[str, Any]:
        return {"OP_TARGET": self.op.node_name, "NODE_NAME": self.op.node_name}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        others = [n.uuid for n in self.cfg.get_node_list()
                  if n.uuid != self.op.node_uuid and not n.offline]
        return others, others

    def check_prereq(self) -> None:
        node = self.cfg.get_node(self.op.node_uuid)
        if node is None:
            raise errors.OpPrereqError(f"Node '{self.op.node_name}' not known",
                                       errors.ECODE_NOENT)
        if node.uuid == self.master_uuid():
            raise errors.OpPrereqError(
                "Node is the master node, failover to another node is required",
                errors.ECODE_INVAL)
        primary, secondary = self.cfg.get_node_instances(node.uuid)
        for inst in primary + secondary:
            raise errors.OpPrereqError(
                f"Instance {inst.name} is still running on the node, please remove first",
                errors.ECODE_INVAL)
        self.node = node

    def exec(self, feedback_fn: FeedbackFn) -> None:
        node = self.node
        self.cfg.commit(remove=[node])
        if not node.offline:
            res = self.rpc.call_node_object("node_leave_cluster", node, [False])
            if res.fail_msg:
                self.log_warning(f"Node {node.name} could not be told to leave the cluster: "
                                 f"{res.fail_msg}; stop its node daemon by hand")
        distribute_cluster_files(self, only_online=True)


class LUNodeSetParams(LogicalUnit):
    """Change node flags: offline, drained, master_candidate, capabilities."""

    HPATH = "node-modify"
    HTYPE = C.HTYPE_NODE

    def check_arguments(self) -> None:
        op = self.op
        flags = [op.offline, op.drained, op.master_candidate]
        if sum(1 for f in flags if f) > 1:
            raise errors.OpPrereqError(
                "Only one of offline, drained and master candidate can be set at once",
                errors.ECODE_INVAL)
        if all(v is None for v in (op.offline, op.drained, op.master_candidate,
                                   op.master_capable, op.vm_capable, op.ndparams,
                                   op.powered, op.secondary_ip)):
            raise errors.OpPrereqError("Please pass at least one modification",
                                       errors.ECODE_INVAL)
        if op.ndparams:
            op.ndparams = validate_params(op.ndparams, C.NDS_PARAMETER_TYPES, "node")

    def expand_names(self) -> None:
        node = self.cfg.expand_node(self.op.node_name)
        self.op.node_name, self.op.node_uuid = node.name, node.uuid
        self.needed_locks = {C.LEVEL_NODE: [node.uuid]}
        if self.op.auto_promote and self.op.master_candidate is False \
                or self.op.offline or self.op.drained:
            # Demotion may promote another node: lock them all.
            self.needed_locks[C.LEVEL_NODE] = None

    def build_hooks_env(self) -> dict[str, Any]:
        op = self.op
        return {"OP_TARGET": op.node_name, "MASTER_CANDIDATE": op.master_candidate,
                "OFFLINE": op.offline, "DRAINED": op.drained,
                "MASTER_CAPABLE": op.master_capable, "VM_CAPABLE": op.vm_capable}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        nodes = [self.master_uuid()]
        if self.op.node_uuid != self.master_uuid():
            nodes.append(self.op.node_uuid)
        return nodes, nodes

    def check_prereq(self) -> None:
        op = self.op
        node = self.cfg.get_node(op.node_uuid)
        if node is None:
            raise errors.OpPrereqError(f"Node '{op.node_name}' not known", errors.ECODE_NOENT)
        is_master = node.uuid == self.master_uuid()
        if is_master and (op.offline or op.drained or op.master_candidate is False
                          or op.master_capable is False):
            raise errors.OpPrereqError(
                "The master role can be changed only via master-failover", errors.ECODE_INVAL)
        new = node.model_copy(deep=True)
        changes: list[list[Any]] = []
        if op.offline is not None and op.offline != node.offline:
            new.offline = op.offline
            changes.append(["offline", op.offline])
            if op.offline:
                if new.master_candidate:
                    new.master_candidate = False
                    changes.append(["master_candidate", "auto-demotion due to offline"])
                if new.drained:
                    new.drained = False
                    changes.append(["drained", "clear drained status due to offline"])
        if op.drained is not None and op.drained != node.drained:
            new.drained = op.drained
            changes.append(["drained", op.drained])
            if op.drained and new.master_candidate:
                new.master_candidate = False
                changes.append(["master_candidate", "auto-demotion due to drain"])
        if op.master_candidate is not None and op.master_candidate != new.master_candidate:
            if op.master_candidate and (new.offline or new.drained or not new.master_capable):
                raise errors.OpPrereqError(
                    f"Node {node.name} is offline, drained or not master capable and "
                    "cannot become a master candidate", errors.ECODE_STATE)
            new.master_candidate = op.master_candidate
            changes.append(["master_candidate", op.master_candidate])
        if op.master_capable is not None:
            new.master_capable = op.master_capable
            changes.append(["master_capable", op.master_capable])
            if not op.master_capable and new.master_candidate:
                new.master_candidate = False
                changes.append(["master_candidate", "auto-demotion due to not capable"])
        if op.vm_capable is not None:
            if not op.vm_capable:
                primary, secondary = self.cfg.get_node_instances(node.uuid)
                if primary or secondary:
                    raise errors.OpPrereqError(
                        "Node still has instances and cannot be made non-vm_capable",
                        errors.ECODE_STATE)
            new.vm_capable = op.vm_capable
            changes.append(["vm_capable", op.vm_capable])
        if op.secondary_ip is not None:
            new.secondary_ip = op.secondary_ip
            changes.append(["secondary_ip", op.secondary_ip])
        if op.ndparams:
            for key, value in op.ndparams.items():
                if value is None:
                    new.ndparams.pop(key, None)
                else:
                    new.ndparams[key] = value
            changes.append(["ndparams", dict(new.ndparams)])
        if op.powered is not None:
            new.powered = op.powered
            changes.append(["powered", op.powered])
        self.promote: list[Node] = []
        if node.master_candidate and not new.master_candidate:
            self._check_candidate_pool(new)
        if op.offline is False and node.offline and not op.force:
            res = self.rpc.call_node_object("version", new, [])
            if res.fail_msg:
                raise errors.OpPrereqError(
                    f"Node {node.name} cannot be brought online: {res.fail_msg}",
                    errors.ECODE_ENVIRON)
        self.new_node = new
        self.changes = changes

    def _check_candidate_pool(self, demoted: Node) -> None:
        cluster = self.cfg.get_cluster()
        others = [n for n in self.cfg.get_node_list() if n.uuid != demoted.uuid]
        current = sum(1 for n in others if n.master_candidate)
        possible = [n for n in others if not n.master_candidate and n.master_capable
                    and not n.offline and not n.drained]
        wanted = min(cluster.candidate_pool_size, len(others))
        if current >= wanted:
            return
        if self.op.auto_promote:
            for n in possible[:wanted - current]:
                promoted = n.model_copy(deep=True)
                promoted.master_candidate = True
                self.promote.append(promoted)
        elif not self.op.force and possible:
            raise errors.OpPrereqError(
                f"Demoting {demoted.name} would leave {current} master candidate(s) out of "
                f"a wanted {wanted}; use --auto-promote or --force", errors.ECODE_STATE)

    def exec(self, feedback_fn: FeedbackFn) -> list[list[Any]]:
        self.cfg.commit(update=[self.new_node, *self.promote])
        for node in self.promote:
            feedback_fn(f"Promoted node {node.name} to master candidate")
        if self.promote or any(c[0] in ("offline", "master_candidate") for c in self.changes):
            distribute_cluster_files(self, only_online=True, full_config=bool(self.promote))
        return self.changes


class LUNodeQuery(QueryLU):
    """Node list with the requested fields (Ganeti 2.x OP_NODE_QUERY)."""

    def check_arguments(self) -> None:
        defs = field_definitions("node")
        unknown = [f for f in self.op.output_fields if f not in defs]
        if unknown:
            raise errors.OpPrereqError(f"Unknown output fields: {', '.join(unknown)}",
                                       errors.ECODE_INVAL)

    def expand_names(self) -> None:
        self.names = [self.cfg.expand_node(n).name for n in self.op.names]
        self.needed_locks = {C.LEVEL_NODE: None} if self.op.use_locking else {}

    def exec(self, feedback_fn: FeedbackFn) -> list[list[Any]]:
        live = None
        if needs_live_data("node", self.op.output_fields):
            live = gather_live_data("node", self.cfg, self.rpc, self.op.output_fields)
        rows = query("node", self.cfg, self.op.output_fields, self.names or None, live)
        return [[value for _status, value in row] for row in rows]
