"""A writer killed with SIGKILL mid-commit leaves a consistent database."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

from store_helpers import make_store

from corral.config import ConfigStore

_WRITER = r"""
import sys
sys.path.insert(0, sys.argv[2])
from store_helpers import make_instance
from corral.config import ConfigStore

store = ConfigStore.open(sys.argv[1])
i = 0
while True:
    i += 1
    inst = make_instance(store, f"crash-{store.serial_no}-{i}",
                         macs=(store.generate_mac(),), disks=2)
    inst.network_port = store.allocate_port()
    store.commit(add=[inst])
    copy = store.get_instance(inst.uuid).model_copy(deep=True)
    copy.admin_state = "up"
    store.commit(update=[copy])
    insts = sorted(store.get_instances().values(), key=lambda x: x.ctime)
    if len(insts) > 20:
        store.commit(remove=insts[:5])
    print(store.serial_no, flush=True)
"""


def test_sigkill_during_commits_leaves_consistent_db(tmp_path: Path) -> None:
    path = tmp_path / "config.db"
    make_store(path).close()
    helpers = str(Path(__file__).parent)
    rng = random.Random(1234)
    last_reported = 0
    for _round in range(6):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), helpers],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            # Wait for some commits, then kill at a random moment.
            for _ in range(rng.randint(3, 30)):
                line = proc.stdout.readline()
                assert line, proc.stderr.read() if proc.stderr else "writer died"
                last_reported = int(line)
            time.sleep(rng.random() * 0.05)
        finally:
            proc.kill()
            proc.wait(timeout=30)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        store = ConfigStore.open(path)
        try:
            assert store.verify_config() == []
            # Every commit the writer saw succeed is on disk.
            assert store.serial_no >= last_reported
            port_users = [i.network_port for i in store.get_instances().values()]
            assert len(port_users) == len(set(port_users))
        finally:
            store.close()
