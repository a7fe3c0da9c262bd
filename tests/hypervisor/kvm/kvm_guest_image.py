"""A tiny busybox root disk for KVM tests and the boot benchmark.

The image is a raw ext4 file made with ``mkfs.ext4 -d`` (no mount needed).
Its ``/sbin/init`` prints ``BOOT_MARKER`` with the boot id, starts busybox
``acpid`` so the ACPI power button (QMP ``system_powerdown``) powers the
guest off, prints a ``login:`` prompt and then runs each line read from the
console as a shell command, printing ``CMD-DONE`` after each. With
``corral_ignore_acpi`` on the kernel command line the guest ignores the power
button (to test forced stops).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from corral.process import run_command

BOOT_MARKER = "CORRAL-GUEST-BOOTED"
LOGIN_PROMPT = "corral-guest login:"
CMD_DONE = "CMD-DONE"

_INIT = f"""#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
hostname corral-guest
echo "{BOOT_MARKER} $(cat /proc/sys/kernel/random/boot_id)"
if grep -q corral_ignore_acpi /proc/cmdline; then
    echo "ACPI-IGNORED"
else
    acpid -c /etc/acpi -l /tmp/acpid.log -p /run/acpid.pid && echo "ACPID-STARTED"
fi
printf '{LOGIN_PROMPT} \\n'
while true; do
    if read -r line; then
        eval "$line"
        echo "{CMD_DONE}"
    else
        sleep 1
    fi
done
"""

_POWER_BUTTON = """#!/bin/sh
echo "POWER-BUTTON: powering off" > /dev/console
poweroff -f
"""


def build_root_disk(path: Path, size_mib: int = 32, busybox: str = "/bin/busybox") -> Path:
    """Write a raw ext4 image with busybox and the test init at ``path``."""
    with tempfile.TemporaryDirectory(prefix="corral-rootfs-") as tmp:
        root = Path(tmp)
        for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc/acpi/PWRF", "proc", "sys",
                  "dev", "tmp", "run", "root"):
            (root / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2(busybox, root / "bin/busybox")
        res = run_command([busybox, "--list"], timeout=10)
        for applet in res.stdout.split():
            if applet != "busybox":
                (root / "bin" / applet).symlink_to("busybox")
        (root / "sbin/init").write_text(_INIT)
        (root / "sbin/init").chmod(0o755)
        (root / "etc/acpi/PWRF/00000080").write_text(_POWER_BUTTON)
        (root / "etc/acpi/PWRF/00000080").chmod(0o755)
        (root / "etc/hostname").write_text("corral-guest\n")
        if path.exists():
            path.unlink()
        res = run_command(["mkfs.ext4", "-q", "-F", "-L", "corralroot", "-d", str(root),
                           str(path), f"{size_mib}M"], timeout=60)
        if res.failed:
            raise RuntimeError(f"mkfs.ext4 failed: {res.output}")
    return path
