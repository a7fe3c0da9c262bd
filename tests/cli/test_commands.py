"""CLI commands against a fake master client: opcodes built, output, exit codes."""

from __future__ import annotations

import json
import time

import yaml

from corral import errors

from .conftest import FakeClient

# -- list / list-fields --------------------------------------------------------------------

def test_node_list_default_fields(run, fake_client: FakeClient) -> None:
    res = run("node", "list")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["Node", "DTotal", "DFree", "MTotal", "MNode", "MFree",
                                "Pinst", "Sinst"]
    assert lines[1].split() == ["node1", "100.0G", "50.0G", "4.0G", "512M", "3.5G", "1",
                                "0"]
    assert lines[2].split() == ["node2", "?", "?", "2.0G", "256M", "1.8G", "0", "0"]


def test_list_options(run) -> None:
    res = run("node", "list", "-o", "name,pip", "--no-headers", "--separator=|")
    assert res.stdout.splitlines() == ["node1|127.0.9.1", "node2|127.0.9.2"]
    res = run("instance", "list", "-o", "+tags,snodes", "--separator", ",")
    assert res.stdout.splitlines()[0] == \
        "Instance,Hypervisor,OS,Primary_node,Status,Memory,Tags,Secondary_Nodes"
    assert res.stdout.splitlines()[2].endswith(",?,,node1")
    res = run("node", "list", "-o", "name,mfree", "--units", "m", "--no-headers")
    assert res.stdout.split() == ["node1", "3584", "node2", "1792"]
    res = run("node", "list", "node2", "-o", "name")
    assert res.stdout.split() == ["Node", "node2"]


def test_list_json(run) -> None:
    res = run("instance", "list", "--output", "json")
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert data[0] == {"name": "inst1", "hypervisor": "fake", "os": "noop",
                       "pnode": "node1", "status": "running", "oper_ram": 128}
    assert data[1]["oper_ram"] is None


def test_unknown_field_exit_14(run) -> None:
    res = run("node", "list", "-o", "name,bogus,other")
    assert res.exit_code == 14
    assert "Unknown field(s): bogus, other" in res.stderr
    assert res.stdout == ""
    assert run("instance", "list-fields", "nope").exit_code == 14
    assert run("job", "list", "-o", "id,nope").exit_code == 14


def test_unknown_name_fails(run) -> None:
    res = run("instance", "list", "nosuch")
    assert res.exit_code == 1
    assert "unknown_entity" in res.stderr and "nosuch" in res.stderr


def test_list_fields(run) -> None:
    res = run("node", "list-fields", "name", "mfree")
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["Name", "Type", "Title", "Description"]
    assert lines[1].split()[:3] == ["name", "text", "Node"]
    assert lines[2].split()[:3] == ["mfree", "unit", "MFree"]


# -- job submission ------------------------------------------------------------------------

def test_add_instance_builds_opcode_and_prints_log(run, fake_client: FakeClient) -> None:
    res = run("instance", "add", "-t", "file", "-n", "node1", "-o", "noop+default",
              "--disk", "0:size=1G,mode=rw", "--disk", "1:size=512M", "--net",
              "0:link=br0", "-B", "maxmem=256M,vcpus=2", "-H", "kvm:acpi=false",
              "--no-start", "--no-ip-check", "--no-name-check", "--tags", "a,b",
              "--priority", "high", "--reason", "testing", "web1")
    assert res.exit_code == 0, res.output
    op = fake_client.last_op()
    assert op["OP_ID"] == "OP_INSTANCE_CREATE" and op["mode"] == "create"
    assert op["instance_name"] == "web1" and op["pnode"] == "node1"
    assert op["os_type"] == "noop+default" and op["disk_template"] == "file"
    assert op["disks"] == [{"size": 1024, "mode": "rw"}, {"size": 512}]
    assert op["nics"] == [{"link": "br0"}]
    assert op["beparams"] == {"maxmem": 256, "vcpus": 2}
    assert op["hypervisor"] == "kvm" and op["hvparams"] == {"acpi": False}
    assert (op["start"], op["ip_check"], op["name_check"]) == (False, False, False)
    assert op["tags"] == ["a", "b"] and op["priority"] == -10
    assert op["reason"][0][:2] == ["gnt:client:gnt-instance", "add"]
    assert op["reason"][1][:2] == ["gnt:user", "testing"]
    assert res.stdout == f"{time.ctime(1700000000)} * doing things\n"


def test_add_diskless_defaults(run, fake_client: FakeClient) -> None:
    res = run("instance", "add", "-t", "diskless", "-o", "noop", "web2")
    assert res.exit_code == 0, res.output
    op = fake_client.last_op()
    assert op["disks"] == [] and op["nics"] == [{}] and op["start"] is True
    assert "hypervisor" not in op
    res = run("instance", "add", "-t", "file", "-o", "noop", "web3")
    assert res.exit_code == 1 and "No disk information" in res.stderr


def test_submit_and_print_jobid(run, fake_client: FakeClient) -> None:
    res = run("instance", "startup", "--submit", "inst1")
    assert res.exit_code == 0 and res.stdout == "JobID: 1\n"
    res = run("node", "modify", "--print-jobid", "-D", "yes", "node2")
    assert res.stdout.splitlines()[0] == "2"
    op = fake_client.last_op()
    assert op["OP_ID"] == "OP_NODE_SET_PARAMS" and op["drained"] is True


def test_dry_run_sets_opcode(run, fake_client: FakeClient) -> None:
    assert run("instance", "remove", "-f", "--dry-run", "inst1").exit_code == 0
    assert fake_client.last_op()["dry_run"] is True


def test_failure_message_and_exit_code(run, fake_client: FakeClient) -> None:
    fake_client.fail["OP_INSTANCE_REMOVE"] = errors.OpPrereqError(
        "Instance 'x' not known", errors.ECODE_NOENT)
    res = run("instance", "remove", "-f", "x")
    assert res.exit_code == 1
    assert res.stderr == ("Failure: prerequisites not met for this operation:\n"
                          "error type: unknown_entity, error details:\n"
                          "Instance 'x' not known\n")


def test_invalid_option_value_is_failure(run, fake_client: FakeClient) -> None:
    res = run("node", "modify", "-C", "maybe", "node1")
    assert res.exit_code == 1 and "maybe" in res.stderr
    assert fake_client.submitted == []


def test_confirmation_declined_13(run, fake_client: FakeClient) -> None:
    res = run("instance", "remove", "inst1", input="y\n")
    assert res.exit_code == 13
    assert fake_client.submitted == []
    res = run("instance", "startup", "--all")
    assert res.exit_code == 13
    assert fake_client.submitted == []
    res = run("instance", "reinstall", "inst1")
    assert res.exit_code == 13
    res = run("job", "cancel", "--pending")
    assert res.exit_code == 0      # nothing pending: nothing to confirm


def test_multi_instance_selection(run, fake_client: FakeClient) -> None:
    res = run("instance", "shutdown", "--all", "--force-multiple", "--timeout", "5")
    assert res.exit_code == 0, res.output
    names = [job[0]["instance_name"] for job in fake_client.submitted]
    assert names == ["inst1", "inst2"]
    assert all(job[0]["timeout"] == 5 for job in fake_client.submitted)
    fake_client.submitted.clear()
    assert run("instance", "reboot", "--primary", "node2", "-t", "soft").exit_code == 13
    res = run("instance", "reboot", "--primary", "--force-multiple", "node2", "-t",
              "soft")
    assert res.exit_code == 0
    assert [(j[0]["instance_name"], j[0]["reboot_type"]) for j in
            fake_client.submitted] == [("inst2", "soft")]
    fake_client.submitted.clear()
    run("instance", "startup", "--tags", "--force-multiple", "web", "-H", "kernel_args=x",
        "-B", "maxmem=1G")
    op = fake_client.last_op()
    assert op["instance_name"] == "inst1"
    assert op["hvparams"] == {"kernel_args": "x"} and op["beparams"] == {"maxmem": 1024}
    res = run("instance", "start", "--node", "--force-multiple", "nosuchnode")
    assert res.exit_code == 1 and "does not match" in res.stderr


def test_single_instance_ops(run, fake_client: FakeClient) -> None:
    assert run("instance", "stop", "inst1", "--no-remember").exit_code == 0
    assert fake_client.last_op()["OP_ID"] == "OP_INSTANCE_SHUTDOWN"
    assert fake_client.last_op()["no_remember"] is True
    assert run("instance", "rename", "--no-ip-check", "--no-name-check", "inst1",
               "inst9").exit_code == 0
    op = fake_client.last_op()
    assert (op["new_name"], op["ip_check"], op["name_check"]) == ("inst9", False, False)
    assert run("instance", "rename", "--no-name-check", "a", "b").exit_code == 1
    assert run("instance", "grow-disk", "--absolute", "inst1", "0", "2G").exit_code == 0
    op = fake_client.last_op()
    assert (op["disk"], op["amount"], op["absolute"]) == (0, 2048, True)
    assert run("instance", "grow-disk", "inst1", "x", "2G").exit_code == 1
    fake_client.results["OP_INSTANCE_ACTIVATE_DISKS"] = [["node1", "disk/0", "/dev/loop0"]]
    res = run("instance", "activate-disks", "inst1")
    assert res.stdout.splitlines()[-1] == "node1:disk/0:/dev/loop0"


def test_instance_modify(run, fake_client: FakeClient) -> None:
    fake_client.results["OP_INSTANCE_SET_PARAMS"] = [["be/maxmem", 512]]
    res = run("instance", "modify", "-B", "maxmem=512,vcpus=default", "--disk",
              "add:size=1G", "--disk", "0:remove", "--net", "0:modify,link=br1", "inst1")
    assert res.exit_code == 0, res.output
    op = fake_client.last_op()
    assert op["beparams"] == {"maxmem": 512, "vcpus": None}
    assert op["disks"] == [["add", -1, {"size": 1024}], ["remove", 0, {}]]
    assert op["nics"] == [["modify", 0, {"link": "br1"}]]
    assert "Modified instance inst1" in res.stdout
    assert " - be/maxmem -> 512" in res.stdout
    res = run("instance", "modify", "inst1")
    assert res.exit_code == 1 and "at least one" in res.stderr


def test_instance_info_yaml(run, fake_client: FakeClient) -> None:
    fake_client.results["OP_INSTANCE_QUERY_DATA"] = {"inst1": {
        "name": "inst1", "config_state": "up", "run_state": "up", "pnode": "node1",
        "pnode_group_name": "default", "pnode_group_uuid": "g1", "snodes": [],
        "os": "noop", "nics": [[None, "n1", None, "aa:00:00:00:00:01", "bridged", "br0",
                                "", None, None]],
        "disk_template": "file", "disks": [{"iv_name": "disk/0", "dev_type": "file",
                                            "logical_id": ["loop", "/x"], "mode": "rw",
                                            "size": 1024, "uuid": "d1",
                                            "pstatus": ["/dev/loop0", 7, 0, None, None,
                                                        False, None]}],
        "hypervisor": "fake", "network_port": None, "hv_instance": {},
        "hv_actual": {"migration_mode": "live"}, "be_instance": {"maxmem": 256},
        "be_actual": {"maxmem": 256, "vcpus": 1}, "os_instance": {}, "os_actual": {},
        "serial_no": 2, "ctime": 1700000000, "mtime": 1700000000, "uuid": "i1",
        "tags": []}}
    assert run("instance", "info").exit_code == 1
    res = run("instance", "info", "inst1")
    assert res.exit_code == 0, res.output
    (doc,) = yaml.safe_load(res.stdout)
    assert doc["Instance name"] == "inst1"
    assert doc["State"] == "configured to be up, actual state is up"
    assert doc["Back-end parameters"] == {"maxmem": 256, "vcpus": "default (1)"}
    assert doc["Disks"][0]["disk/0"] == "file, size 1.0G"
    assert doc["NICs"][0]["MAC"] == "aa:00:00:00:00:01"
    op = fake_client.last_op()
    assert op["instances"] == ["inst1"] and op["static"] is False


# -- cluster -------------------------------------------------------------------------------

def test_cluster_info_yaml(run) -> None:
    res = run("cluster", "info")
    assert res.exit_code == 0, res.output
    doc = yaml.safe_load(res.stdout)
    assert doc["Cluster name"] == "cluster.example"
    assert doc["Master node"] == "node1"
    assert doc["Cluster parameters"]["candidate pool size"] == 10
    assert doc["Hypervisor parameters"] == {"fake": {"migration_mode": "live"}}
    assert doc["Default instance parameters"] == {"default": {"maxmem": 128}}
    assert run("cluster", "show").exit_code == 0


def test_cluster_simple_commands(run, fake_client: FakeClient) -> None:
    assert run("cluster", "getmaster").stdout == "node1\n"
    assert "Internode protocol: 3000000" in run("cluster", "version").stdout
    assert run("cluster", "master-ping").exit_code == 0
    assert run("cluster", "queue", "drain").exit_code == 0 and fake_client.drain
    assert run("cluster", "queue", "info").stdout == "The drain flag is set\n"
    run("cluster", "queue", "undrain")
    assert run("cluster", "queue", "info").stdout == "The drain flag is unset\n"
    assert run("cluster", "join-token", "--ttl", "60").stdout == "token-60\n"


def test_cluster_modify_and_verify(run, fake_client: FakeClient) -> None:
    res = run("cluster", "modify", "-C", "5", "-B", "maxmem=1G", "-H",
              "kvm:kernel_path=/k,-initrd_path", "--enabled-hypervisors", "kvm,fake",
              "--prealloc-wipe-disks", "yes")
    assert res.exit_code == 0, res.output
    op = fake_client.last_op()
    assert op["OP_ID"] == "OP_CLUSTER_SET_PARAMS"
    assert op["candidate_pool_size"] == 5 and op["beparams"] == {"maxmem": 1024}
    assert op["hvparams"] == {"kvm": {"kernel_path": "/k", "initrd_path": None}}
    assert op["enabled_hypervisors"] == ["kvm", "fake"]
    assert op["prealloc_wipe_disks"] is True
    assert run("cluster", "modify").exit_code == 1
    verify_job = fake_client.submit_job([{"OP_ID": "OP_CLUSTER_VERIFY_CONFIG"}])
    fake_client.results["OP_CLUSTER_VERIFY"] = {"jobs": [[True, verify_job]]}
    fake_client.results["OP_CLUSTER_VERIFY_CONFIG"] = True
    res = run("cluster", "verify", "--error-codes", "-I", "ENODEHV,ECLUSTERCFG")
    assert res.exit_code == 0, res.output
    op = fake_client.last_op()
    assert op["error_codes"] is True and op["ignore_errors"] == ["ENODEHV", "ECLUSTERCFG"]
    assert f"Waiting for job {verify_job}" in res.stdout
    fake_client.results["OP_CLUSTER_VERIFY_CONFIG"] = False
    assert run("cluster", "verify").exit_code == 1


def test_destroy_needs_yes_do_it(run, fake_client: FakeClient) -> None:
    res = run("cluster", "destroy")
    assert res.exit_code == 1 and "--yes-do-it" in res.stderr
    assert fake_client.submitted == []


def test_tags(run, fake_client: FakeClient, tmp_path) -> None:
    assert run("node", "list-tags", "node1").stdout == "a\nb\n"
    assert run("cluster", "list-tags").stdout == "c1\n"
    tagfile = tmp_path / "tags"
    tagfile.write_text("x\n\ny\n")
    assert run("instance", "add-tags", "inst1", "t1", "--from", str(tagfile)).exit_code == 0
    op = fake_client.last_op()
    assert (op["OP_ID"], op["kind"], op["name"], op["tags"]) == (
        "OP_TAGS_SET", "instance", "inst1", ["t1", "x", "y"])
    assert run("cluster", "remove-tags", "c1").exit_code == 0
    op = fake_client.last_op()
    assert (op["OP_ID"], op["kind"], op["name"]) == ("OP_TAGS_DEL", "cluster", None)
    assert run("node", "add-tags", "node1").exit_code == 1
    fake_client.results["OP_TAGS_SEARCH"] = [["/nodes/node1", "a"], ["/cluster", "c1"]]
    res = run("cluster", "search-tags", ".")
    assert res.stdout == "/cluster c1\n/nodes/node1 a\n"
    fake_client.results["OP_TAGS_SEARCH"] = []
    assert run("cluster", "search-tags", "zzz").exit_code == 1


# -- node ----------------------------------------------------------------------------------

def test_node_add_modify_remove(run, fake_client: FakeClient) -> None:
    assert run("node", "add", "--primary-ip", "127.0.9.3", "--noded-port", "1812",
               "--vm-capable", "no", "node3").exit_code == 0
    op = fake_client.last_op()
    assert (op["OP_ID"], op["node_name"], op["primary_ip"], op["noded_port"],
            op["vm_capable"]) == ("OP_NODE_ADD", "node3", "127.0.9.3", 1812, False)
    fake_client.results["OP_NODE_SET_PARAMS"] = [["drained", True]]
    res = run("node", "modify", "-D", "yes", "--auto-promote", "node2")
    assert "Modified node node2" in res.stdout and " - drained -> True" in res.stdout
    assert fake_client.last_op()["auto_promote"] is True
    assert run("node", "modify", "node2").exit_code == 1
    assert run("node", "remove", "node3").exit_code == 0
    assert fake_client.last_op()["OP_ID"] == "OP_NODE_REMOVE"


def test_node_info_yaml(run) -> None:
    res = run("node", "info", "node1")
    assert res.exit_code == 0, res.output
    (doc,) = yaml.safe_load(res.stdout)
    assert doc["Node name"] == "node1" and doc["primary ip"] == "127.0.9.1"
    assert doc["primary for instances"] == ["inst1"]


# -- os ------------------------------------------------------------------------------------

def test_os_list_and_diagnose(run, fake_client: FakeClient) -> None:
    fake_client.results["OP_OS_DIAGNOSE"] = [
        ["noop", True, [], False, False], ["deb", True, ["a", "b"], False, False],
        ["bad", False, [], False, False], ["hid", True, [], True, False]]
    res = run("os", "list")
    assert res.stdout.split() == ["Name", "noop", "deb+a", "deb+b"]
    assert fake_client.last_op()["output_fields"] == ["name", "valid", "variants", "hidden",
                                                      "blacklisted"]
    fake_client.results["OP_OS_DIAGNOSE"] = [
        ["noop", True, [], {"node1": [["/usr/share/ganeti/os/noop", True, "", [], [],
                                       [20], True]]}, False, False],
        ["bad", False, [], {"node1": [["/srv/x/bad", False, "missing create", [], [], [],
                                       False]]}, False, False]]
    res = run("os", "diagnose")
    assert res.exit_code == 1
    assert "OS: noop [global status: valid]" in res.stdout
    assert ("  Node: node1, status: invalid - missing create (path: /srv/x/bad)"
            in res.stdout)


# -- jobs ----------------------------------------------------------------------------------

def test_job_commands(run, fake_client: FakeClient) -> None:
    fake_client.submit_job([{"OP_ID": "OP_TEST_DELAY", "duration": 0}])
    fake_client.submit_job([{"OP_ID": "OP_TEST_DELAY", "duration": 1}])
    fake_client.jobs[2]["status"] = "queued"
    res = run("job", "list")
    assert res.stdout.splitlines()[0].split() == ["ID", "Status", "Summary"]
    assert res.stdout.splitlines()[1].split() == ["1", "success", "TEST_DELAY"]
    assert run("job", "list", "--pending", "--no-headers").stdout.split() == [
        "2", "queued", "TEST_DELAY"]
    doc = yaml.safe_load(run("job", "info", "1").stdout)
    assert doc[0]["Job ID"] == 1 and doc[0]["Status"] == "success"
    assert doc[0]["Opcodes"][0]["OP_ID"] == "OP_TEST_DELAY"
    assert doc[0]["Opcodes"][0]["Execution log"][0]["Content"] == "hi"
    assert run("job", "info", "99").exit_code == 1
    res = run("job", "watch", "1")
    assert res.stdout.splitlines()[0] == "Output from job 1 follows"
    assert run("job", "wait", "1").stdout == ""
    assert run("job", "cancel", "1").stdout == "Job 1 canceled\n"
    assert run("job", "cancel", "7").exit_code == 1
    res = run("job", "cancel", "--kill", "1")
    assert res.exit_code == 1 and "--yes-do-it" in res.stderr
    assert run("job", "cancel", "--pending").exit_code == 13
    assert run("job", "cancel", "--pending", "-f").stdout.splitlines() == [
        "2", "Job 2 canceled"]
    assert run("job", "change-priority", "--priority", "low", "2").exit_code == 0
    assert fake_client.last_priority == (2, 10)
    assert run("job", "autoarchive", "1d").stdout == "Archived 2 jobs, 0 unchecked left\n"
    assert fake_client.last_autoarchive[0] == 86400
    assert run("job", "archive", "1").exit_code == 0
    assert run("job", "archive", "1").exit_code == 1


def test_gnt_aliases_share_commands() -> None:
    from click.testing import CliRunner

    from corral.cli import main

    res = CliRunner().invoke(main.instance, ["--help"], prog_name="gnt-instance")
    assert res.exit_code == 0 and "startup" in res.output and "grow-disk" in res.output
    for group in (main.cluster, main.node, main.os_group, main.job):
        assert CliRunner().invoke(group, ["--help"]).exit_code == 0


def test_no_master_daemon(tmp_path) -> None:
    from click.testing import CliRunner

    from corral.cli.main import corral

    res = CliRunner().invoke(corral, ["--root", str(tmp_path), "cluster", "getmaster"])
    assert res.exit_code == 1
    assert "Cannot communicate with the master daemon" in res.stderr


def test_root_option_on_gnt_groups(tmp_path, fake_client: FakeClient) -> None:
    from click.testing import CliRunner

    from corral import cli as cli_pkg
    from corral.cli import main

    seen = []
    old = cli_pkg.client_factory
    cli_pkg.client_factory = lambda paths: seen.append(paths.root) or fake_client
    try:
        res = CliRunner().invoke(main.cluster, ["--root", str(tmp_path), "getmaster"])
        assert res.exit_code == 0 and res.stdout == "node1\n"
        res = CliRunner().invoke(main.corral, ["--root", "/nonexistent", "node", "--root",
                                               str(tmp_path), "list", "-o", "name"])
        assert res.exit_code == 0
    finally:
        cli_pkg.client_factory = old
    assert seen == [tmp_path, tmp_path]


def test_daemon_and_dev_cluster_commands(tmp_path) -> None:
    from click.testing import CliRunner

    from corral.cli.main import corral

    runner = CliRunner()
    res = runner.invoke(corral, ["--root", str(tmp_path), "daemon", "status", "noded"])
    assert res.exit_code == 1 and res.stdout == "noded is not running\n"
    res = runner.invoke(corral, ["--root", str(tmp_path), "daemon", "stop", "masterd"])
    assert res.exit_code == 0 and res.stdout == "masterd was not running\n"
    res = runner.invoke(corral, ["--root", str(tmp_path), "daemon", "start", "noded"])
    assert res.exit_code == 2 and "--bind" in res.stderr
    res = runner.invoke(corral, ["dev-cluster", "down", "--dir", str(tmp_path / "none")])
    assert res.exit_code == 0
    res = runner.invoke(corral, ["dev-cluster", "up", "--nodes", "0", "--dir",
                                 str(tmp_path / "dc")])
    assert res.exit_code == 1 and "Invalid number of nodes" in res.stderr
