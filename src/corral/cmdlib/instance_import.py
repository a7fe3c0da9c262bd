"""OP_INSTANCE_CREATE in the modes ``import`` and ``remote-import``.

Mirrors the import parts of ``ganeti.cmdlib.instance_create.LUInstanceCreate``
(``_ReadExportInfo``, ``_ReadExportParams``, the import branch of ``Exec``)
and ``masterd.instance.RemoteImport``. :class:`LUInstanceImport` extends
:class:`~corral.cmdlib.instance_create.LUInstanceCreate`, which hands
opcodes of these modes over to it; everything else (checks, disks, the
configuration entry, starting, the cleanup of a failed creation) is the
creation's.

* ``import``: ``export_info`` reads ``config.ini`` on the source node (found
  by ``export_list`` when no ``src_node`` is given); every parameter the
  opcode leaves out is taken from the export (OS, disk template, disk sizes
  and names, NICs, hypervisor and its parameters, backend and OS
  parameters, tags). The disks are created and each image is streamed from
  the source node through the OS ``import`` script (raw without OS); the OS
  ``rename`` script runs when the name changed. A missing or corrupt export
  is refused before anything is created; a failed transfer removes the
  disks and the configuration entry again.
* ``remote-import``: the source cluster's signed handshake and X509 CA are
  checked, an X509 key is made on the primary node, one importer per disk
  listens there, and the job log gets a ``remote-import`` entry
  ``{"x509_ca": signed PEM, "disks": [[host, port, magic, hmac, salt], ...]}``
  for the source cluster's OP_BACKUP_EXPORT ``mode=remote``.

Differences from Ganeti: a disk that fails to import fails the creation
(Ganeti warns and keeps a half-imported instance); a NIC takes the export's
MAC address unless another NIC of the cluster uses it (then a new one is
generated); only hypervisor parameters of the export's own hypervisor that
Corral knows are used.
"""

from __future__ import annotations

import posixpath
from typing import Any

from corral import constants as C
from corral import errors, export_format
from corral.cmdlib.backup_remote import (
    RIE_CERT_VALIDITY,
    RIE_CONNECT_TIMEOUT,
    SideTransfers,
    TransferFailed,
    check_remote_export_handshake,
    compute_remote_import_disk_info,
    disk_magic,
    generate_secret,
    load_signed_x509_certificate,
    read_cluster_domain_secret,
    sign_x509_certificate,
)
from corral.cmdlib.base import ALL_SET
from corral.cmdlib.common import validate_params
from corral.cmdlib.instance_create import LUInstanceCreate
from corral.cmdlib.instance_storage import assemble_disks, shutdown_disks
from corral.cmdlib.instance_utils import mac_in_use, node_name
from corral.export_format import ExportInfo
from corral.impexp.master import transfer_disks
from corral.objects import Disk, Instance

LISTEN_TIMEOUT = 60.0            # seconds for the importers to report their ports


def dest_io(instance: Instance, disk: Disk, idx: int) -> list[Any]:
    """Where imported data goes: the OS import script, raw without OS."""
    if instance.os:
        return ["script", disk.to_dict(), idx]
    return ["raw", disk.to_dict()]


def _param_types(defaults: dict[str, Any]) -> dict[str, str]:
    kinds = {bool: "bool", int: "int", float: "float"}
    return {k: kinds.get(type(v), "string") for k, v in defaults.items()}


class LUInstanceImport(LUInstanceCreate):
    """Create an instance from an export (local or from another cluster)."""

    MODES = (C.INSTANCE_IMPORT, C.INSTANCE_REMOTE_IMPORT)
    INSTALL_STEP = "importing the disks"

    # -- arguments -----------------------------------------------------------------
    def check_arguments(self) -> None:
        op = self.op
        self.export_read = False
        self.src_images: list[str | None] = []
        self.old_name: str | None = None
        if op.mode not in self.MODES:
            raise errors.ProgrammerError(f"LUInstanceImport cannot do mode {op.mode}")
        if op.no_install:
            self.log_info("No-installation mode has no effect during import")
        op.no_install = False
        if op.mode == C.INSTANCE_IMPORT:
            # As Ganeti: the variant worked when the instance was installed.
            op.force_variant = True
            if op.src_path is not None and (not isinstance(op.src_path, str) or
                                            not op.src_path):
                raise errors.OpPrereqError("Invalid source path", errors.ECODE_INVAL)
            # The rest of the creation checks run once the export filled
            # in what the opcode leaves out (check_prereq).
            return
        if op.snode or op.snode_uuid:
            raise errors.OpPrereqError("Remote import doesn't support secondary nodes",
                                       errors.ECODE_INVAL)
        self.cds = read_cluster_domain_secret(self.paths)
        if not op.source_handshake:
            raise errors.OpPrereqError("Missing source handshake", errors.ECODE_INVAL)
        problem = check_remote_export_handshake(self.cds, op.source_handshake)
        if problem:
            raise errors.OpPrereqError(f"Invalid handshake: {problem}", errors.ECODE_INVAL)
        self.source_ca_pem = load_signed_x509_certificate(op.source_x509_ca, self.cds,
                                                          "source X509 CA")
        if not op.source_instance_name:
            raise errors.OpPrereqError("Missing source instance name", errors.ECODE_INVAL)
        self.old_name = op.source_instance_name
        super().check_arguments()

    def _check_template(self, cluster: Any) -> None:
        # An import's template may come from the export, read in check_prereq.
        if self.op.mode == C.INSTANCE_IMPORT and not self.export_read:
            return
        super()._check_template(cluster)

    # -- names and locks -------------------------------------------------------------
    def expand_names(self) -> None:
        super().expand_names()
        op = self.op
        if op.mode != C.INSTANCE_IMPORT:
            return
        assert self.needed_locks is not None
        if op.src_path is None:
            op.src_path = op.instance_name
        if op.src_node is None and op.src_node_uuid is None:
            if posixpath.isabs(op.src_path):
                raise errors.OpPrereqError("Importing an instance from a path requires a "
                                           "source node option", errors.ECODE_INVAL)
            export_format.check_export_name(op.src_path)
            self.needed_locks[C.LEVEL_NODE] = ALL_SET
        else:
            src = self.cfg.expand_node(op.src_node_uuid or op.src_node)
            op.src_node, op.src_node_uuid = src.name, src.uuid
            nodes = self.needed_locks[C.LEVEL_NODE]
            if nodes is not ALL_SET and src.uuid not in nodes:
                nodes.append(src.uuid)
            if not posixpath.isabs(op.src_path):
                export_format.check_export_name(op.src_path)
                op.src_path = posixpath.join(export_format.EXPORT_DIR, op.src_path)

    # -- prerequisites ---------------------------------------------------------------
    def check_prereq(self) -> None:
        op = self.op
        if op.mode == C.INSTANCE_IMPORT and not self.export_read:
            info = self._read_export_info()
            self.old_name = info.name
            self._read_export_params(info)
            self.export_read = True
            LUInstanceCreate.check_arguments(self)
        super().check_prereq()
        if op.mode == C.INSTANCE_IMPORT:
            by_index = {d.index: d for d in self.export_info.disks}
            self.src_images = []
            for idx in range(len(self.disks)):
                edisk = by_index.get(idx)
                self.src_images.append(posixpath.join(op.src_path, edisk.dump)
                                       if edisk is not None and edisk.dump else None)
            if not any(self.src_images) and self.disks:
                raise errors.OpPrereqError(f"The export in {op.src_path} holds no disk "
                                           "images", errors.ECODE_INVAL)

    def _read_export_info(self) -> ExportInfo:
        """``config.ini`` of the export (Ganeti's ``_ReadExportInfo``)."""
        op = self.op
        if op.src_node_uuid is None:
            nodes = sorted(self.owned_locks(C.LEVEL_NODE))
            for uuid, res in sorted(self.rpc.call("export_list", nodes, []).items()):
                if not res.fail_msg and op.src_path in (res.payload or []):
                    op.src_node, op.src_node_uuid = node_name(self, uuid), uuid
                    op.src_path = posixpath.join(export_format.EXPORT_DIR, op.src_path)
                    break
            else:
                raise errors.OpPrereqError(f"No export found for relative path {op.src_path}",
                                           errors.ECODE_NOENT)
        self.check_node_online(op.src_node_uuid)
        res = self.rpc.call_one("export_info", op.src_node_uuid, [op.src_path])
        if res.fail_msg:
            ecode = errors.ECODE_NOENT if "No export found" in res.fail_msg \
                else errors.ECODE_INVAL
            raise errors.OpPrereqError(f"No export or invalid export found in dir "
                                       f"{op.src_path} on node {op.src_node}: {res.fail_msg}",
                                       ecode)
        if not isinstance(res.payload, str):
            raise errors.OpPrereqError("Invalid export information from node "
                                       f"{op.src_node}", errors.ECODE_INVAL)
        self.export_info = export_format.parse_config_ini(res.payload)
        return self.export_info

    def _read_export_params(self, info: ExportInfo) -> None:
        """Use the export's values where the opcode gives none (``_ReadExportParams``)."""
        op = self.op
        if op.os_type is None:
            if not info.os:
                raise errors.OpPrereqError("The export names no OS and none was given",
                                           errors.ECODE_INVAL)
            op.os_type = info.os
        if op.disk_template is None:
            if info.disk_template is None:
                raise errors.OpPrereqError("No disk template specified and the export is "
                                           "missing the disk_template information",
                                           errors.ECODE_INVAL)
            if info.disk_template not in C.DISK_TEMPLATES:
                raise errors.OpPrereqError(f"Disk template specified in configuration file "
                                           f"is not one of the allowed values: "
                                           f"{' '.join(C.DISK_TEMPLATES)}", errors.ECODE_INVAL)
            op.disk_template = info.disk_template
        if not op.disks:
            op.disks = [{C.IDISK_SIZE: d.size, **({C.IDISK_NAME: d.name} if d.name else {})}
                        for d in info.disks]
            if not op.disks and op.disk_template != C.DT_DISKLESS:
                raise errors.OpPrereqError("No disk info specified and the export is missing "
                                           "the disk information", errors.ECODE_INVAL)
        if not op.nics:
            op.nics = [self._nic_from_export(n, info.name) for n in info.nics]
        if not op.tags and info.tags:
            op.tags = list(info.tags)
        if op.hypervisor is None and info.hypervisor:
            op.hypervisor = info.hypervisor
        if info.hvparams and info.hypervisor == op.hypervisor:
            types = _param_types(dict(C.HVC_DEFAULTS.get(op.hypervisor, {})))
            # "None" is how an unset value was written: the cluster default applies.
            known = {k: v for k, v in info.hvparams.items()
                     if k in types and k not in C.HVC_GLOBALS and v != "None"}
            skipped = sorted(set(info.hvparams) - set(known) - C.HVC_GLOBALS)
            if skipped:
                self.log_info(f"Ignoring hypervisor parameters of the export unknown to "
                              f"Corral: {', '.join(skipped)}")
            for key, value in validate_params(known, types, "hypervisor").items():
                op.hvparams.setdefault(key, value)
        be = dict(info.beparams)
        if C.BE_MEMORY in be:
            mem = be.pop(C.BE_MEMORY)
            be.setdefault(C.BE_MAXMEM, mem)
            be.setdefault(C.BE_MINMEM, mem)
        if C.BE_MEMORY not in op.beparams:
            for key, value in be.items():
                if key in C.BES_PARAMETER_TYPES and value != "None":
                    op.beparams.setdefault(key, value)
        for key, value in info.osparams.items():
            op.osparams.setdefault(key, value)
        if info.osparams_private:
            self.log_warning("The export holds private OS parameters; Corral does not "
                             "import them")

    def _nic_from_export(self, nic: export_format.ExportNic,
                         old_name: str | None) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if nic.mac and (old_name == self.op.instance_name or not mac_in_use(self, nic.mac)):
            spec[C.INIC_MAC] = nic.mac
        elif nic.mac:
            self.log_info(f"MAC address {nic.mac} of the export is in use, generating a "
                          "new one")
        for key in (C.INIC_IP, C.INIC_NAME):
            if getattr(nic, key):
                spec[key] = getattr(nic, key)
        if nic.network:
            spec[C.INIC_NETWORK] = nic.network
        else:
            for key in (C.INIC_MODE, C.INIC_LINK, C.INIC_VLAN):
                if getattr(nic, key):
                    spec[key] = getattr(nic, key)
        return spec

    # -- hooks ---------------------------------------------------------------------
    def build_hooks_env(self) -> dict[str, Any]:
        env = super().build_hooks_env()
        env["SRC_IMAGES"] = " ".join(i for i in self.src_images if i)
        return env

    # -- execution ---------------------------------------------------------------
    def _install(self, inst: Instance) -> None:
        """Import the disks' data (instead of the OS create script)."""
        current = self.cfg.get_instance(inst.uuid) or inst
        if current.disks:
            ok, _ = assemble_disks(self, current)
            if not ok:
                raise errors.OpExecError("Could not activate the disks for the import")
            current = self.cfg.get_instance(inst.uuid) or current
        try:
            if self.op.mode == C.INSTANCE_IMPORT:
                self._import_disks(current)
            else:
                self._remote_import(current)
            if self.old_name and self.old_name != current.name:
                self._rename_script(current)
        finally:
            if not self.op.start and current.disks:
                shutdown_disks(self, self.cfg.get_instance(inst.uuid) or current)

    def _import_disks(self, inst: Instance) -> None:
        op = self.op
        feedback = self.op_ctx.feedback
        feedback("* running the instance OS import scripts...")
        pairs = []
        indexes = []
        for idx, (disk, image) in enumerate(zip(inst.disks, self.src_images)):
            if image:
                pairs.append((["file", image], dest_io(inst, disk, idx)))
                indexes.append(idx)
        if not pairs:
            return
        results = transfer_disks(self, op.src_node_uuid, inst.primary_node, inst, pairs,
                                 op.compress, feedback, stop_on_failure=True)
        failed = [str(indexes[i]) for i, ok in enumerate(results) if not ok]
        if failed:
            raise errors.OpExecError(f"Could not import disk(s) {', '.join(failed)} from "
                                     f"{op.src_path} on node {op.src_node} (see the "
                                     "warnings above)")

    def _remote_import(self, inst: Instance) -> None:
        op = self.op
        pnode = self.cfg.get_node(inst.primary_node)
        assert pnode is not None
        feedback = self.op_ctx.feedback
        feedback("* preparing remote import...")
        res = self.rpc.call_one("x509_cert_create", pnode.uuid, [RIE_CERT_VALIDITY])
        res.raise_for(f"Can't create X509 key and certificate on {pnode.name}")
        key_name, cert_pem = res.payload
        # The source stops its instance before it connects: wait that long too.
        connect = float(RIE_CONNECT_TIMEOUT + op.source_shutdown_timeout)
        sides = SideTransfers(self, pnode, feedback)
        try:
            signed = sign_x509_certificate(cert_pem, self.cds, generate_secret(8))
            magic_base = generate_secret(6)
            encoded = self.rpc.encode_instance(inst)
            magics = []
            for idx, disk in enumerate(inst.disks):
                magic = disk_magic(magic_base, inst.name, idx)
                magics.append(magic)
                opts = {"key_name": key_name, "ca_pem": self.source_ca_pem,
                        "compress": op.compress, "magic": magic, "expected_size": disk.size,
                        "connect_timeout": connect, "connect_retries": 0,
                        "listen_host": pnode.primary_ip}
                sides.start_import(idx, opts, encoded, dest_io(inst, disk, idx))
            ports = sides.wait_listening(LISTEN_TIMEOUT)
            salt = generate_secret(8)
            disks = [compute_remote_import_disk_info(self.cds, salt, idx, pnode.primary_ip,
                                                     ports[idx], magics[idx])
                     for idx in range(len(inst.disks))]
            self.op_ctx.feedback({"disks": disks, "x509_ca": signed}, C.ELOG_REMOTE_IMPORT)
            results = sides.wait(connect_timeout=connect + 30)
        except TransferFailed as err:
            raise errors.OpExecError(f"Remote import failed: {err}") from None
        finally:
            sides.finish()
            res = self.rpc.call_one("x509_cert_remove", pnode.uuid, [key_name])
            if res.fail_msg:
                self.log_warning(f"Could not remove the X509 key {key_name} from node "
                                 f"{pnode.name}: {res.fail_msg}")
        failed = [str(i) for i, ok in enumerate(results) if not ok]
        if failed:
            raise errors.OpExecError(f"Could not import disk(s) {', '.join(failed)} from "
                                     "the source cluster (see the warnings above)")

    def _rename_script(self, inst: Instance) -> None:
        res = self.rpc.call_one("instance_run_rename", inst.primary_node,
                                [self.rpc.encode_instance(inst), self.old_name,
                                 self.op.debug_level or 0])
        if res.fail_msg:
            self.log_warning(f"Failed to run rename script for {inst.name} on node "
                             f"{node_name(self, inst.primary_node)}: {res.fail_msg}")
