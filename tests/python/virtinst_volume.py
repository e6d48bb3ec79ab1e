"""virt-manager's own storage code against a libvirt URI (qpoold's, in the tests).

Runs Debian's `virtinst` module (the library behind virt-manager and virt-install, in
/usr/share/virt-manager) with Debian's python3-libvirt, exactly as virt-manager's "new volume"
dialog and virt-install's `--disk pool=…,size=…` use it, and prints one JSON object on stdout:

    create URI POOL NAME CAPACITY ALLOCATION FORMAT
        virtinst.StorageVolume: validate() + install(meter). virtinst passes libvirt's
        PREALLOC_METADATA flag for qcow2 volumes without a backing store.
    disk URI POOL NAME SIZE_GIB SPARSE(0|1) FORMAT
        virtinst.DeviceDisk.build_vol_install + set_vol_install + validate + build_storage.
    free-name URI POOL BASENAME SUFFIX
        virtinst.StorageVolume.find_free_name (refreshes the pool, then probes names).

A failure prints the exception on stderr and exits 1.
"""

import json
import sys

sys.path.insert(0, "/usr/share/virt-manager")

import libvirt  # noqa: E402
from virtinst import DeviceDisk, StorageVolume, connection, progress  # noqa: E402


class RecordingMeter(progress.Meter):
    """A quiet meter that remembers what virtinst reported."""

    def __init__(self):
        super().__init__(quiet=True)
        self.started = None
        self.updates = []
        self.ended = False

    def start(self, text, size):
        self.started = [text, size]
        super().start(text, size)

    def update(self, new_total):
        self.updates.append(new_total)
        super().update(new_total)

    def end(self):
        self.ended = True
        super().end()


def open_conn(uri):
    # Only the caller's URI: no libvirt default URI from the environment.
    conn = connection.VirtinstConnection(uri)
    conn.open(None, None)
    return conn


def describe(vol, meter, sent_xml):
    kind, capacity, allocation = vol.info()
    return {
        "name": vol.name(),
        "key": vol.key(),
        "path": vol.path(),
        "type": kind,
        "capacity": capacity,
        "allocation": allocation,
        "xml": vol.XMLDesc(0),
        "sent_xml": sent_xml,
        "meter": {
            "started": meter.started,
            "updates": meter.updates,
            "ended": meter.ended,
        },
    }


def create(uri, pool_name, name, capacity, allocation, fmt):
    conn = open_conn(uri)
    vol = StorageVolume(conn)
    vol.pool = conn.storagePoolLookupByName(pool_name)
    vol.name = name
    vol.capacity = int(capacity)
    vol.allocation = int(allocation)
    vol.format = fmt
    vol.validate()
    sent = vol.get_xml()
    meter = RecordingMeter()
    created = vol.install(meter=meter)
    return describe(created, meter, sent)


def disk(uri, pool_name, name, size_gib, sparse, fmt):
    conn = open_conn(uri)
    pool = conn.storagePoolLookupByName(pool_name)
    vol_install = DeviceDisk.build_vol_install(
        conn, name, pool, int(size_gib), sparse == "1", fmt=fmt)
    dev = DeviceDisk(conn)
    dev.set_vol_install(vol_install)
    dev.validate()
    sent = vol_install.get_xml()
    meter = RecordingMeter()
    dev.build_storage(meter)
    path = dev.get_source_path()
    created = conn.storageVolLookupByPath(path)
    out = describe(created, meter, sent)
    out["source_path"] = path
    return out


def free_name(uri, pool_name, basename, suffix):
    conn = open_conn(uri)
    pool = conn.storagePoolLookupByName(pool_name)
    return {"name": StorageVolume.find_free_name(conn, pool, basename, suffix=suffix)}


def main(argv):
    commands = {"create": (create, 6), "disk": (disk, 6), "free-name": (free_name, 4)}
    if len(argv) < 2 or argv[1] not in commands or len(argv) - 2 != commands[argv[1]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    # libvirt's default handler would print every error twice; exceptions carry them.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    func = commands[argv[1]][0]
    try:
        result = func(*argv[2:])
    except Exception as e:  # pylint: disable=broad-except
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
