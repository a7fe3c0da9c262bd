"""Constants shared by the master, the nodes and the clients.

Names and values follow ``ganeti.constants`` (Ganeti 3.0) where Ganeti has
them, so that users, hook scripts and RAPI clients see the same strings.
"""

from __future__ import annotations

from corral import __version__

RELEASE_VERSION = __version__
PROTOCOL_VERSION = 3000000      # the RPC/LUXI protocol version we speak
CONFIG_VERSION = 3000000
OS_API_VERSIONS = (10, 15, 20)
OS_API_V10, OS_API_V15, OS_API_V20 = 10, 15, 20
EXPORT_VERSION = 0
HOOKS_VERSION = 2
RAPI_VERSION = 2

# Network ports (defaults; each can be changed per node or cluster).
DEFAULT_NODED_PORT = 1811
DEFAULT_RAPI_PORT = 5080
DEFAULT_MIGRATION_PORT = 8102
FIRST_CLUSTER_PORT = 11000     # cluster TCP/UDP port pool (VNC, DRBD)

# Disk templates.
DT_DISKLESS = "diskless"
DT_FILE = "file"
DT_SHARED_FILE = "sharedfile"
DT_PLAIN = "plain"
DT_BLOCK = "blockdev"
DT_DRBD8 = "drbd"
DT_RBD = "rbd"
DT_EXT = "ext"
DT_GLUSTER = "gluster"
DISK_TEMPLATES = (DT_DISKLESS, DT_FILE, DT_SHARED_FILE, DT_PLAIN, DT_BLOCK,
                  DT_DRBD8, DT_RBD, DT_EXT, DT_GLUSTER)
# What this version of Corral can actually create.
DTS_IMPLEMENTED = frozenset({DT_DISKLESS, DT_FILE, DT_SHARED_FILE})
DTS_FILEBASED = frozenset({DT_FILE, DT_SHARED_FILE, DT_GLUSTER})
DTS_INT_MIRROR = frozenset({DT_DRBD8})
DTS_EXT_MIRROR = frozenset({DT_DISKLESS, DT_BLOCK, DT_EXT, DT_SHARED_FILE,
                            DT_RBD, DT_GLUSTER})
DTS_MIRRORED = DTS_INT_MIRROR | DTS_EXT_MIRROR
DTS_COPYABLE = frozenset({DT_PLAIN, DT_FILE})

# Storage types and the fields of storage units (Ganeti's ST_*, SF_*).
ST_FILE = "file"
ST_SHARED_FILE = "sharedfile"
ST_GLUSTER = "gluster"
ST_LVM_PV = "lvm-pv"
ST_LVM_VG = "lvm-vg"
ST_DISKLESS = "diskless"
ST_BLOCK = "blockdev"
ST_RADOS = "rados"
ST_EXT = "ext"
STORAGE_TYPES = (ST_FILE, ST_SHARED_FILE, ST_GLUSTER, ST_LVM_PV, ST_LVM_VG, ST_DISKLESS,
                 ST_BLOCK, ST_RADOS, ST_EXT)
MAP_DISK_TEMPLATE_STORAGE_TYPE = {
    DT_DISKLESS: ST_DISKLESS, DT_FILE: ST_FILE, DT_SHARED_FILE: ST_SHARED_FILE,
    DT_PLAIN: ST_LVM_VG, DT_BLOCK: ST_BLOCK, DT_DRBD8: ST_LVM_VG, DT_RBD: ST_RADOS,
    DT_EXT: ST_EXT, DT_GLUSTER: ST_GLUSTER}
# Storage types whose units nodes can list (gnt-node list-storage).
STS_REPORT_NODE_STORAGE = frozenset({ST_FILE, ST_SHARED_FILE, ST_GLUSTER, ST_LVM_PV,
                                     ST_LVM_VG})
SF_NAME = "name"
SF_NODE = "node"
SF_TYPE = "type"
SF_SIZE = "size"
SF_USED = "used"
SF_FREE = "free"
SF_ALLOCATABLE = "allocatable"
VALID_STORAGE_FIELDS = (SF_NAME, SF_NODE, SF_TYPE, SF_SIZE, SF_USED, SF_FREE,
                        SF_ALLOCATABLE)
DTS_GROWABLE = frozenset({DT_SHARED_FILE, DT_DRBD8, DT_PLAIN, DT_EXT, DT_FILE,
                          DT_RBD, DT_GLUSTER})
DTS_SNAPSHOT_CAPABLE = frozenset({DT_PLAIN, DT_DRBD8, DT_EXT})
DEFAULT_ENABLED_DISK_TEMPLATES = (DT_FILE, DT_SHARED_FILE, DT_DISKLESS)

# File storage drivers.
FD_LOOP = "loop"
FD_BLKTAP = "blktap"
FD_BLKTAP2 = "blktap2"
FILE_DRIVERS = (FD_LOOP, FD_BLKTAP, FD_BLKTAP2)
FD_DEFAULT = FD_LOOP

# Disk access modes.
DISK_RDONLY = "ro"
DISK_RDWR = "rw"
DISK_ACCESS_SET = (DISK_RDONLY, DISK_RDWR)
MAX_DISKS = 16
MAX_NICS = 8

# Hypervisors.
HT_KVM = "kvm"
HT_FAKE = "fake"
HT_XEN_PVM = "xen-pvm"
HT_XEN_HVM = "xen-hvm"
HT_LXC = "lxc"
HT_CHROOT = "chroot"
HYPER_TYPES = (HT_KVM, HT_FAKE, HT_XEN_PVM, HT_XEN_HVM, HT_LXC, HT_CHROOT)
HTS_IMPLEMENTED = frozenset({HT_FAKE, HT_KVM})

# Instance creation modes.
INSTANCE_CREATE = "create"
INSTANCE_IMPORT = "import"
INSTANCE_REMOTE_IMPORT = "remote-import"
INSTANCE_CREATE_MODES = (INSTANCE_CREATE, INSTANCE_IMPORT, INSTANCE_REMOTE_IMPORT)

# Admin states of an instance.
ADMINST_UP = "up"
ADMINST_DOWN = "down"
ADMINST_OFFLINE = "offline"
ADMINST_ALL = (ADMINST_UP, ADMINST_DOWN, ADMINST_OFFLINE)
ADMIN_SOURCE = "admin"
USER_SOURCE = "user"

# Instance status values reported by queries (field "status").
INSTST_RUNNING = "running"
INSTST_ADMINDOWN = "ADMIN_down"
INSTST_ADMINOFFLINE = "ADMIN_offline"
INSTST_NODEOFFLINE = "ERROR_nodeoffline"
INSTST_NODEDOWN = "ERROR_nodedown"
INSTST_WRONGNODE = "ERROR_wrongnode"
INSTST_ERRORUP = "ERROR_up"
INSTST_ERRORDOWN = "ERROR_down"
INSTST_USERDOWN = "USER_down"
# Corral extension: added to the configuration by a create job that has not
# completed it (still running, or interrupted: see Instance.creating_job).
INSTST_CREATING = "ADMIN_creating"

# Reboot types.
INSTANCE_REBOOT_SOFT = "soft"
INSTANCE_REBOOT_HARD = "hard"
INSTANCE_REBOOT_FULL = "full"
REBOOT_TYPES = (INSTANCE_REBOOT_SOFT, INSTANCE_REBOOT_HARD, INSTANCE_REBOOT_FULL)
DEFAULT_SHUTDOWN_TIMEOUT = 120

# NIC modes.
NIC_MODE_BRIDGED = "bridged"
NIC_MODE_ROUTED = "routed"
NIC_MODE_OVS = "openvswitch"
NIC_VALID_MODES = (NIC_MODE_BRIDGED, NIC_MODE_ROUTED, NIC_MODE_OVS)
DEFAULT_BRIDGE = "xen-br0"
DEFAULT_MAC_PREFIX = "aa:00:00"
VALUE_AUTO = "auto"
VALUE_GENERATE = "generate"
VALUE_NONE = "none"

# Tags.
TAG_CLUSTER = "cluster"
TAG_NODEGROUP = "nodegroup"
TAG_NODE = "node"
TAG_INSTANCE = "instance"
TAG_NETWORK = "network"
VALID_TAG_TYPES = (TAG_CLUSTER, TAG_NODEGROUP, TAG_NODE, TAG_INSTANCE, TAG_NETWORK)
MAX_TAG_LEN = 128
MAX_TAGS_PER_OBJ = 4096

# Hook phases and object types.
HOOKS_PHASE_PRE = "pre"
HOOKS_PHASE_POST = "post"
HTYPE_CLUSTER = "CLUSTER"
HTYPE_NODE = "NODE"
HTYPE_GROUP = "GROUP"
HTYPE_INSTANCE = "INSTANCE"
HTYPE_NETWORK = "NETWORK"
HKR_SKIP, HKR_FAIL, HKR_SUCCESS = 0, 1, 2
HOOKS_NAME_RE = r"^[a-zA-Z0-9_-]+$"

# Job queue.
JOB_STATUS_QUEUED = "queued"
JOB_STATUS_WAITING = "waiting"
JOB_STATUS_RUNNING = "running"
JOB_STATUS_CANCELING = "canceling"
JOB_STATUS_CANCELED = "canceled"
JOB_STATUS_SUCCESS = "success"
JOB_STATUS_ERROR = "error"
JOBS_FINALIZED = frozenset({JOB_STATUS_CANCELED, JOB_STATUS_SUCCESS, JOB_STATUS_ERROR})
JOB_STATUS_ALL = (JOB_STATUS_QUEUED, JOB_STATUS_WAITING, JOB_STATUS_RUNNING,
                  JOB_STATUS_CANCELING, JOB_STATUS_CANCELED, JOB_STATUS_SUCCESS,
                  JOB_STATUS_ERROR)
OP_STATUS_QUEUED = JOB_STATUS_QUEUED
OP_STATUS_WAITING = JOB_STATUS_WAITING
OP_STATUS_RUNNING = JOB_STATUS_RUNNING
OP_STATUS_CANCELING = JOB_STATUS_CANCELING
OP_STATUS_CANCELED = JOB_STATUS_CANCELED
OP_STATUS_SUCCESS = JOB_STATUS_SUCCESS
OP_STATUS_ERROR = JOB_STATUS_ERROR
OP_PRIO_HIGHEST = -20
OP_PRIO_HIGH = -10
OP_PRIO_NORMAL = 0
OP_PRIO_LOW = 10
OP_PRIO_LOWEST = 19
OP_PRIO_SUBMIT_VALID = frozenset({OP_PRIO_HIGH, OP_PRIO_NORMAL, OP_PRIO_LOW})
OP_PRIO_DEFAULT = OP_PRIO_NORMAL
PRIORITY_NAMES = {"low": OP_PRIO_LOW, "normal": OP_PRIO_NORMAL, "high": OP_PRIO_HIGH}
ELOG_MESSAGE = "message"
ELOG_MESSAGE_LIST = "message-list"
ELOG_REMOTE_IMPORT = "remote-import"
ELOG_JQUEUE_TEST = "jqueue-test"
ELOG_DELAY_TEST = "delay-test"
JOB_QUEUE_SIZE_HARD_LIMIT = 5000
DEFAULT_MAX_RUNNING_JOBS = 20
DEFAULT_MAX_TRACKED_JOBS = 25

# Lock levels, in acquisition order.
LEVEL_CLUSTER = "cluster"
LEVEL_INSTANCE = "instance"
LEVEL_NODEGROUP = "nodegroup"
LEVEL_NODE = "node"
LEVEL_NODE_RES = "node-res"
LEVEL_NETWORK = "network"
LEVELS = (LEVEL_CLUSTER, LEVEL_INSTANCE, LEVEL_NODEGROUP, LEVEL_NODE,
          LEVEL_NODE_RES, LEVEL_NETWORK)
BGL = "BGL"

# Node roles (query field "role").
NR_MASTER = "M"
NR_MCANDIDATE = "C"
NR_REGULAR = "R"
NR_DRAINED = "D"
NR_OFFLINE = "O"

# Hypervisor instance states as returned by GetInstanceInfo.
HV_STATE_RUNNING = 0
HV_STATE_SHUTDOWN = 1

# Console kinds.
CONS_SSH = "ssh"
CONS_VNC = "vnc"
CONS_SPICE = "spice"
CONS_MESSAGE = "msg"

# RPC timeouts (seconds), as Ganeti's classes.
RPC_TMO_URGENT = 60
RPC_TMO_FAST = 300
RPC_TMO_NORMAL = 900
RPC_TMO_SLOW = 3600
RPC_TMO_4HRS = 14400
RPC_TMO_1DAY = 86400
RPC_CONNECT_TIMEOUT = 5

# Backend parameters (beparams).
BE_MAXMEM = "maxmem"
BE_MINMEM = "minmem"
BE_MEMORY = "memory"      # legacy alias of maxmem
BE_VCPUS = "vcpus"
BE_AUTO_BALANCE = "auto_balance"
BE_ALWAYS_FAILOVER = "always_failover"
BE_SPINDLE_USE = "spindle_use"
BEC_DEFAULTS: dict[str, object] = {
    BE_MINMEM: 128,
    BE_MAXMEM: 128,
    BE_VCPUS: 1,
    BE_AUTO_BALANCE: True,
    BE_ALWAYS_FAILOVER: False,
    BE_SPINDLE_USE: 1,
}
BES_PARAMETER_TYPES: dict[str, str] = {
    BE_MINMEM: "size", BE_MAXMEM: "size", BE_VCPUS: "int",
    BE_AUTO_BALANCE: "bool", BE_ALWAYS_FAILOVER: "bool", BE_SPINDLE_USE: "int",
}

# NIC parameters.
NIC_MODE = "mode"
NIC_LINK = "link"
NIC_VLAN = "vlan"
NICC_DEFAULTS: dict[str, object] = {NIC_MODE: NIC_MODE_BRIDGED, NIC_LINK: DEFAULT_BRIDGE,
                                    NIC_VLAN: ""}
NICS_PARAMETER_TYPES: dict[str, str] = {NIC_MODE: "string", NIC_LINK: "string",
                                        NIC_VLAN: "string"}

# Node parameters.
ND_OOB_PROGRAM = "oob_program"
ND_SPINDLE_COUNT = "spindle_count"
ND_EXCLUSIVE_STORAGE = "exclusive_storage"
ND_OVS = "ovs"
ND_OVS_NAME = "ovs_name"
ND_OVS_LINK = "ovs_link"
ND_SSH_PORT = "ssh_port"
ND_CPU_SPEED = "cpu_speed"
NDC_DEFAULTS: dict[str, object] = {
    ND_OOB_PROGRAM: "",
    ND_SPINDLE_COUNT: 1,
    ND_EXCLUSIVE_STORAGE: False,
    ND_OVS: False,
    ND_OVS_NAME: "switch1",
    ND_OVS_LINK: "",
    ND_SSH_PORT: 22,
    ND_CPU_SPEED: 1,
}
NDS_PARAMETER_TYPES: dict[str, str] = {
    ND_OOB_PROGRAM: "string", ND_SPINDLE_COUNT: "int", ND_EXCLUSIVE_STORAGE: "bool",
    ND_OVS: "bool", ND_OVS_NAME: "string", ND_OVS_LINK: "string", ND_SSH_PORT: "int",
    ND_CPU_SPEED: "float",
}

# Out-of-band management (Ganeti's OOB protocol: ``oob_program COMMAND NODE``).
OOB_POWER_ON = "power-on"
OOB_POWER_OFF = "power-off"
OOB_POWER_CYCLE = "power-cycle"
OOB_POWER_STATUS = "power-status"
OOB_HEALTH = "health"
OOB_COMMANDS = (OOB_HEALTH, OOB_POWER_CYCLE, OOB_POWER_OFF, OOB_POWER_ON, OOB_POWER_STATUS)
OOB_POWER_STATUS_POWERED = "powered"
OOB_STATUS_OK = "OK"
OOB_STATUS_WARNING = "WARNING"
OOB_STATUS_CRITICAL = "CRITICAL"
OOB_STATUS_UNKNOWN = "UNKNOWN"
OOB_STATUSES = (OOB_STATUS_OK, OOB_STATUS_WARNING, OOB_STATUS_CRITICAL, OOB_STATUS_UNKNOWN)
OOB_TIMEOUT = 60                    # seconds an OOB program may run
OOB_POWER_DELAY = 2.0               # seconds between powering on two nodes

# Disk template parameters (none for the templates implemented so far).
DISK_DT_DEFAULTS: dict[str, dict[str, object]] = {dt: {} for dt in DISK_TEMPLATES}

# Instance disk parameters accepted in IDiskParams.
IDISK_SIZE = "size"
IDISK_MODE = "mode"
IDISK_ADOPT = "adopt"
IDISK_VG = "vg"
IDISK_METAVG = "metavg"
IDISK_NAME = "name"
IDISK_PROVIDER = "provider"
IDISK_SPINDLES = "spindles"
IDISK_ACCESS = "access"
IDISK_PARAMS = frozenset({IDISK_SIZE, IDISK_MODE, IDISK_ADOPT, IDISK_VG, IDISK_METAVG,
                          IDISK_NAME, IDISK_PROVIDER, IDISK_SPINDLES, IDISK_ACCESS})
INIC_MAC = "mac"
INIC_IP = "ip"
INIC_MODE = "mode"
INIC_LINK = "link"
INIC_NAME = "name"
INIC_VLAN = "vlan"
INIC_BRIDGE = "bridge"
INIC_NETWORK = "network"
INIC_PARAMS = frozenset({INIC_MAC, INIC_IP, INIC_MODE, INIC_LINK, INIC_NAME, INIC_VLAN,
                         INIC_BRIDGE, INIC_NETWORK})

# Hypervisor parameters that are cluster-wide (not per instance).
HVC_GLOBALS = frozenset({"migration_port", "migration_bandwidth", "migration_mode",
                         "xen_cmd"})

# Export.
EXPORT_MODE_LOCAL = "local"
EXPORT_MODE_REMOTE = "remote"
EXPORT_MODES = (EXPORT_MODE_LOCAL, EXPORT_MODE_REMOTE)
EXPORT_CONF_FILE = "config.ini"

# Migration.
HT_MIGRATION_LIVE = "live"
HT_MIGRATION_NONLIVE = "non-live"
HT_MIGRATION_MODES = (HT_MIGRATION_LIVE, HT_MIGRATION_NONLIVE)

# Cluster defaults.
DEFAULT_CANDIDATE_POOL_SIZE = 10
# Ganeti enables the gzip family by default; Corral adds zstd (fast and
# installed by setup), still refused at transfer time on a node without it.
DEFAULT_COMPRESSION_TOOLS = ("gzip", "gzip-fast", "gzip-slow", "zstd")
DEFAULT_FILE_STORAGE_DIR = "/srv/corral/file-storage"
DEFAULT_SHARED_FILE_STORAGE_DIR = "/srv/corral/shared-file-storage"

# Hypervisor parameter defaults (Ganeti's hvcDefaults, adjusted where this
# project's nodes need it; see hypervisor/kvm for how acceleration and vhost
# are decided at start time).
HV_KVM_DEFAULTS: dict[str, object] = {
    "kvm_path": "/usr/bin/qemu-system-x86_64",
    "kernel_path": "",
    "initrd_path": "",
    "root_path": "/dev/vda",
    "kernel_args": "ro",
    "serial_console": True,
    "serial_speed": 38400,
    "acpi": True,
    "vnc_bind_address": "",
    "vnc_tls": False,
    "vnc_x509_path": "",
    "vnc_x509_verify": False,
    "vnc_password_file": "",
    "spice_bind": "",
    "boot_order": "disk",
    "cdrom_image_path": "",
    "cdrom2_image_path": "",
    "floppy_image_path": "",
    "cdrom_disk_type": "",
    "nic_type": "paravirtual",
    "disk_type": "paravirtual",
    "scsi_controller_type": "lsi",
    "disk_cache": "default",
    "disk_aio": "threads",
    "disk_discard": "default",
    "usb_mouse": "",
    "keymap": "",
    "migration_port": DEFAULT_MIGRATION_PORT,
    "migration_bandwidth": 32,
    "migration_downtime": 30,
    "migration_mode": "live",
    "migration_caps": "",
    "use_guest_agent": False,
    "use_localtime": False,
    "security_model": "none",
    "security_domain": "",
    "kvm_flag": "",
    "vhost_net": False,
    "virtio_net_queues": 1,
    "use_chroot": False,
    "user_shutdown": False,
    "mem_path": "",
    "reboot_behavior": "reboot",
    "cpu_mask": "all",
    "cpu_type": "",
    "cpu_cores": 0,
    "cpu_threads": 0,
    "cpu_sockets": 0,
    "soundhw": "",
    "usb_devices": "",
    "vga": "",
    "kvm_extra": "",
    "machine_version": "",
    "kvm_pci_reservations": 12,
    "vnet_hdr": True,
}
HV_FAKE_DEFAULTS: dict[str, object] = {"migration_mode": "live"}
HVC_DEFAULTS: dict[str, dict[str, object]] = {
    HT_KVM: HV_KVM_DEFAULTS,
    HT_FAKE: HV_FAKE_DEFAULTS,
}

# Node group allocation policies (Ganeti's ALLOC_POLICY_*), in order of preference.
ALLOC_POLICY_PREFERRED = "preferred"
ALLOC_POLICY_LAST_RESORT = "last_resort"
ALLOC_POLICY_UNALLOCABLE = "unallocable"
VALID_ALLOC_POLICIES = (ALLOC_POLICY_PREFERRED, ALLOC_POLICY_LAST_RESORT,
                        ALLOC_POLICY_UNALLOCABLE)
