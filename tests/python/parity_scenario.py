"""One scenario of libvirt storage API calls, for the differential suite (tests/parity_libvirtd.rs).

    parity_scenario.py URI BASE

drives, through Debian's python3-libvirt, every storage call of libvirt's public API against
the daemon at URI (qpoold, or a real libvirtd 9.0 with its storage driver): connection calls,
pool lookups and listings with every filter, define/create/build/start/destroy/delete/
undefine with their flags and in each state, autostart, refresh, volume create, create-from
and clone with each flag, info, info-flags, XML, path, key, lookups, delete, wipe, wipe
patterns, resize with each flag, upload and download with offsets and sparse streams, and
the storage pool events all of these send. Every pool lives under BASE (a directory on a
filesystem of its own, which nothing else writes to), so that the two runs start from the
same state.

It prints one JSON array on stdout, one record per step, in a fixed order that never depends
on what a call returned:

    {"step": NAME, "ret": VALUE}                    the call returned VALUE (normalized)
    {"step": NAME, "err": CODE, "domain": D, "msg": M}
                                                    it failed with that virErrorNumber (the
                                                    virErrorDomain D and the message M are
                                                    for people only)
    {"step": NAME, "os": TEXT}                      a file the step reads failed (strerror)
    {"step": NAME, "exc": TEXT}                     the script itself failed (a bug here)

Values are normalized so that the two daemons can be compared: BASE becomes "BASE", a UUID
the daemon generated becomes "uuid#N" (numbered in order of appearance), file timestamps are
dropped from XML, and pool sizes become the statvfs expression of the pool's filesystem they
equal ("f_blocks", "f_blocks-f_bfree", "f_bfree", "f_bavail"), taken right after a start or
refresh, when both daemons have just read them.
"""

import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
import uuid as uuidlib

import libvirt

URI, BASE = sys.argv[1], sys.argv[2]
MIB = 1 << 20
# How long to wait for an event that must come (a failure, not a pause, when it does not).
EVENT_DEADLINE = 30.0

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

# ---- recording ---------------------------------------------------------------------------

RECORDS = []
KNOWN_UUIDS = {}


def fixed_uuid(name):
    """The UUID the scenario writes into the XML of pool `name` (the same for both runs)."""
    u = str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, "qpool-parity:" + name))
    KNOWN_UUIDS[u] = u
    return u


UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIMES_RE = re.compile(r"^\s*<(atime|mtime|ctime)>.*</(atime|mtime|ctime)>\n", re.M)


def uuid_label(u):
    if u not in KNOWN_UUIDS:
        KNOWN_UUIDS[u] = "uuid#%d" % (len(KNOWN_UUIDS) + 1)
    return KNOWN_UUIDS[u]


def fs_expr(value, path):
    """The statvfs expression `value` equals for the filesystem of `path`."""
    try:
        st = os.statvfs(path)
    except OSError:
        return ["unknown", value]
    fr = st.f_frsize
    for name, v in (
        ("f_blocks", st.f_blocks * fr),
        ("f_blocks-f_bfree", (st.f_blocks - st.f_bfree) * fr),
        ("f_bfree", st.f_bfree * fr),
        ("f_bavail", st.f_bavail * fr),
    ):
        if value == v:
            return name
    return "other" if value else 0


POOL_SIZE_RE = re.compile(r"<(capacity|allocation|available) unit='bytes'>(\d+)</")


def norm(v, fs=None):
    """A value as it is compared: BASE, generated UUIDs and timestamps normalized."""
    if isinstance(v, bytes):
        return {"sha256": hashlib.sha256(v).hexdigest(), "len": len(v)}
    if isinstance(v, str):
        s = v.replace(BASE, "BASE")
        s = UUID_RE.sub(lambda m: uuid_label(m.group(0)), s)
        s = TIMES_RE.sub("", s)
        if fs is not None and s.startswith("<pool"):
            s = POOL_SIZE_RE.sub(
                lambda m: "<%s unit='bytes'>%s</" % (m.group(1), fs_expr(int(m.group(2)), fs)),
                s,
            )
        return s
    if isinstance(v, (list, tuple)):
        return [norm(x, fs) for x in v]
    if isinstance(v, dict):
        return {k: norm(x, fs) for k, x in v.items()}
    return v


class Missing(Exception):
    """An object an earlier step should have kept is not there."""


def jsonable(v):
    """A returned object as JSON: pools and volumes by name, the rest as it is."""
    if isinstance(v, libvirt.virStoragePool):
        return ["pool", v.name()]
    if isinstance(v, libvirt.virStorageVol):
        return ["vol", norm(v.key())]
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return norm(v)
    return type(v).__name__


def step(name, fn):
    try:
        rec = {"step": name, "ret": jsonable(fn())}
    except libvirt.libvirtError as e:
        rec = {
            "step": name,
            "err": e.get_error_code(),
            "domain": e.get_error_domain(),
            "msg": str(e).replace(BASE, "BASE"),
        }
    except Missing as e:  # an earlier step did not give the object this one needs
        rec = {"step": name, "missing": str(e)}
    except OSError as e:  # a file the step reads is not there (compared like a result)
        rec = {"step": name, "os": os.strerror(e.errno) if e.errno else str(e)}
    except Exception as e:  # a bug in the scenario: recorded, never hidden
        rec = {"step": name, "exc": "%s: %s" % (type(e).__name__, str(e).replace(BASE, "BASE"))}
    RECORDS.append(rec)
    return rec


# ---- events ------------------------------------------------------------------------------

EVENTS = []
EVENTS_CV = threading.Condition()
MARKER = "marker"


def lifecycle_cb(_conn, pool, event, detail, _opaque):
    with EVENTS_CV:
        EVENTS.append(["lifecycle", pool.name(), event, detail])
        EVENTS_CV.notify_all()


def refresh_cb(_conn, pool, _opaque):
    with EVENTS_CV:
        EVENTS.append(["refresh", pool.name()])
        EVENTS_CV.notify_all()


def event_loop():
    while True:
        libvirt.virEventRunDefaultImpl()


def wait_for(pred):
    """Waits until pred(EVENTS) holds (EVENTS_CV held); False after EVENT_DEADLINE."""
    deadline = time.monotonic() + EVENT_DEADLINE
    with EVENTS_CV:
        while not pred(EVENTS):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            EVENTS_CV.wait(left)
        return True


def events(name):
    """Records, as step `name`, the events sent since the last call. Events reach a client in the order the
    daemon queued them, so a refresh of the marker pool, once its event is in, has every
    earlier event in front of it."""

    def drain():
        conn.storagePoolLookupByName(MARKER).refresh(0)
        if not wait_for(lambda ev: ["refresh", MARKER] in ev):
            return "the marker's refresh event never came"
        with EVENTS_CV:
            got = EVENTS[: EVENTS.index(["refresh", MARKER])]
            del EVENTS[: EVENTS.index(["refresh", MARKER]) + 1]
        return [e for e in got if e[1] != MARKER]

    step(name, drain)


# ---- helpers -----------------------------------------------------------------------------


def pool_xml(name, uuid=True, path=None, extra_target="", extra=""):
    u = "  <uuid>%s</uuid>\n" % fixed_uuid(name) if uuid else ""
    return (
        "<pool type='dir'>\n  <name>%s</name>\n%s%s  <target>\n    <path>%s</path>\n%s  </target>\n</pool>\n"
        % (name, u, extra, path or os.path.join(BASE, name), extra_target)
    )


def vol_xml(name, capacity=None, allocation=None, fmt="raw", target_extra="", extra=""):
    cap = "  <capacity unit='bytes'>%d</capacity>\n" % capacity if capacity is not None else ""
    alloc = "  <allocation unit='bytes'>%d</allocation>\n" % allocation if allocation is not None else ""
    form = "    <format type='%s'/>\n" % fmt if fmt else ""
    return "<volume>\n  <name>%s</name>\n%s%s%s  <target>\n%s%s  </target>\n</volume>\n" % (
        name, cap, alloc, extra, form, target_extra)


COMPAT11 = "    <compat>1.1</compat>\n"


def pool(name):
    return conn.storagePoolLookupByName(name)


def vol(p, name):
    return pool(p).storageVolLookupByName(name)


def pool_dir(name):
    return os.path.join(BASE, name)


def pool_info(name):
    state, cap, alloc, avail = pool(name).info()
    fs = pool_dir(name)
    return [state, fs_expr(cap, fs), fs_expr(alloc, fs), fs_expr(avail, fs)]


def pool_xml_desc(name, flags=0):
    return norm(pool(name).XMLDesc(flags), pool_dir(name))


def names(objs):
    return sorted(o.name() for o in objs)


def vol_handle(v):
    return norm([v.name(), v.key(), v.path()])


def vol_facts(p, name):
    """What a client learns about a volume: info, physical info and the XML."""
    step("vol-info %s/%s" % (p, name), lambda: vol(p, name).info())
    step("vol-info-physical %s/%s" % (p, name), lambda: vol(p, name).infoFlags(1))
    step("vol-xml %s/%s" % (p, name), lambda: norm(vol(p, name).XMLDesc(0)))


def file_facts(path):
    """Size and allocation of a file, as the pool directory has it."""
    st = os.stat(path)
    return [st.st_size, st.st_blocks * 512]


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def upload(p, name, data, offset=0, length=0, flags=0, holes=()):
    """Uploads `data` (with `holes`, a list of (offset, length) inside it that go as holes
    when flags asks for a sparse stream)."""
    st = conn.newStream(0)
    vol(p, name).upload(st, offset, length, flags)
    if flags & libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM:
        pos = [0]
        hole_at = {o: n for o, n in holes}

        def next_hole():
            for o, n in sorted(holes):
                if o >= pos[0]:
                    return o
            return len(data)

        def handler(_st, nbytes, _opaque):
            end = min(pos[0] + nbytes, next_hole())
            chunk = data[pos[0]:end]
            pos[0] = end
            return chunk

        def hole_handler(_st, _opaque):
            # [in data, length of the section from here]
            if pos[0] in hole_at:
                return [False, hole_at[pos[0]]]
            return [True, next_hole() - pos[0]]

        def skip_handler(_st, n, _opaque):
            pos[0] += n
            return 0

        st.sparseSendAll(handler, hole_handler, skip_handler, None)
    else:
        view = [data]

        def handler(_st, nbytes, _opaque):
            chunk, view[0] = view[0][:nbytes], view[0][nbytes:]
            return chunk

        st.sendAll(handler, None)
    st.finish()
    return "ok"


def download(p, name, offset=0, length=0, flags=0):
    """Downloads and returns the data, and with a sparse stream the holes as [offset, length]
    (adjacent holes and adjacent data merged, so that packet sizes do not matter)."""
    st = conn.newStream(0)
    vol(p, name).download(st, offset, length, flags)
    parts = []

    def add(kind, value):
        if parts and parts[-1][0] == kind:
            parts[-1][1] = parts[-1][1] + value
        else:
            parts.append([kind, value])

    if flags & libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM:
        st.sparseRecvAll(lambda _s, buf, _o: add("data", buf) or 0,
                         lambda _s, n, _o: add("hole", n) or 0, None)
    else:
        st.recvAll(lambda _s, buf, _o: add("data", buf) or 0, None)
    st.finish()
    return [[k, norm(v) if k == "data" else v] for k, v in parts]


def wait_refresh_event(p):
    """Waits for a refresh event of pool p that libvirt sends on its own (after an upload);
    True when it came."""
    ok = wait_for(lambda ev: ["refresh", p] in ev)
    if ok:
        with EVENTS_CV:
            EVENTS.remove(["refresh", p])
    return ok


# ---- the scenario ------------------------------------------------------------------------

libvirt.virEventRegisterDefaultImpl()
threading.Thread(target=event_loop, daemon=True).start()
conn = libvirt.open(URI)

# Set-up, not recorded: no pools but the marker (qpoold defines a `default` pool at its
# first start), and the event callbacks.
for p in conn.listAllStoragePools(0):
    if p.isActive():
        p.destroy()
    if p.isPersistent():
        p.undefine()
marker = conn.storagePoolDefineXML(pool_xml(MARKER), 0)
marker.build(0)
marker.create(0)
conn.storagePoolEventRegisterAny(None, libvirt.VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE, lifecycle_cb, None)
conn.storagePoolEventRegisterAny(None, libvirt.VIR_STORAGE_POOL_EVENT_ID_REFRESH, refresh_cb, None)
events("events: set-up")
RECORDS.clear()

# -- the connection
step("getType", lambda: conn.getType())
step("getLibVersion", lambda: conn.getLibVersion())
step("getVersion", lambda: conn.getVersion())
step("getHostname", lambda: norm(conn.getHostname()) == norm(socket.gethostname()))
step("isSecure", lambda: conn.isSecure())
step("isEncrypted", lambda: conn.isEncrypted())
step("isAlive", lambda: conn.isAlive())
step("getCapabilities", lambda: conn.getCapabilities())
step("getStoragePoolCapabilities", lambda: conn.getStoragePoolCapabilities(0))
step("getStoragePoolCapabilities flags 1", lambda: conn.getStoragePoolCapabilities(1))
step("getSysinfo", lambda: conn.getSysinfo(0))
step("findStoragePoolSources dir", lambda: conn.findStoragePoolSources("dir", None, 0))
step("findStoragePoolSources bogus", lambda: conn.findStoragePoolSources("bogus", None, 0))
step("listAllDomains", lambda: len(conn.listAllDomains(0)))


def node_info_is_the_hosts():
    model, memory_mib, cpus, mhz, nodes, sockets, cores, threads = conn.getInfo()
    with open("/proc/meminfo") as f:
        total_kib = int(f.readline().split()[1])
    return [model == os.uname().machine, memory_mib == total_kib // 1024,
            cpus == os.cpu_count(), nodes * sockets * cores * threads == cpus]


step("nodeGetInfo", node_info_is_the_hosts)
step("listNetworks", lambda: conn.listNetworks())

# -- no pools yet (but the marker)
step("numOfStoragePools", lambda: conn.numOfStoragePools())
step("numOfDefinedStoragePools", lambda: conn.numOfDefinedStoragePools())
step("listAllStoragePools", lambda: names(conn.listAllStoragePools(0)))

# -- define: refusals
step("define malformed", lambda: conn.storagePoolDefineXML("<pool type='dir'><name>x</name>", 0))
step("define empty", lambda: conn.storagePoolDefineXML("", 0))
step("define no name", lambda: conn.storagePoolDefineXML(
    "<pool type='dir'><target><path>%s</path></target></pool>" % pool_dir("x"), 0))
step("define no target", lambda: conn.storagePoolDefineXML(
    "<pool type='dir'><name>x</name></pool>", 0))
step("define bogus type", lambda: conn.storagePoolDefineXML(
    "<pool type='bogus'><name>x</name><target><path>/x</path></target></pool>", 0))
step("define bad uuid", lambda: conn.storagePoolDefineXML(
    "<pool type='dir'><name>x</name><uuid>not-a-uuid</uuid><target><path>/x</path></target></pool>", 0))
step("define flags 2", lambda: conn.storagePoolDefineXML(pool_xml("x"), 2))
step("define newline name", lambda: conn.storagePoolDefineXML(pool_xml("a\nb", uuid=False), 0))
INVALID = pool_xml("inv", extra="  <bogus/>\n")
step("define VALIDATE schema-invalid", lambda: conn.storagePoolDefineXML(INVALID, 1))
step("define schema-invalid", lambda: pool(conn.storagePoolDefineXML(INVALID, 0).name()).name())
step("undefine schema-invalid", lambda: pool("inv").undefine())
step("define VALIDATE valid", lambda: conn.storagePoolDefineXML(pool_xml("val"), 1).name())
step("undefine valid", lambda: pool("val").undefine())
events("events: define refusals")

# -- a relative target path
step("relative target: define", lambda: conn.storagePoolDefineXML(pool_xml("rel", path="rel/x"), 0).name())
step("relative target: undefine", lambda: pool("rel").undefine())
events("relative target: events")

# -- other pool types
step("other pool types: define fs", lambda: conn.storagePoolDefineXML(
    "<pool type='fs'><name>fs</name><source><device path='/dev/null'/></source>"
    "<target><path>%s</path></target></pool>" % pool_dir("fs"), 0).name())
step("other pool types: undefine fs", lambda: pool("fs").undefine())
events("other pool types: events")

# -- p1: defined, inactive
P1_XML = pool_xml("p1")
step("define p1", lambda: norm(conn.storagePoolDefineXML(P1_XML, 0).UUIDString()))
step("redefine p1", lambda: conn.storagePoolDefineXML(P1_XML, 0).name())
step("define p1 other uuid", lambda: conn.storagePoolDefineXML(
    P1_XML.replace(fixed_uuid("p1"), fixed_uuid("other")), 0))
step("define p2 with p1's uuid", lambda: conn.storagePoolDefineXML(
    pool_xml("p2").replace(fixed_uuid("p2"), fixed_uuid("p1")), 0))
step("define p3 on p1's target", lambda: conn.storagePoolDefineXML(
    pool_xml("p3", path=pool_dir("p1")), 0))
step("define p4 without uuid", lambda: norm(conn.storagePoolDefineXML(pool_xml("p4", uuid=False), 0).UUIDString()))
step("create p1 transient twin", lambda: conn.storagePoolCreateXML(P1_XML, 0))
events("events: define p1")

step("lookup p1 by name", lambda: norm(pool("p1").UUIDString()))
step("lookup p1 by uuid string", lambda: conn.storagePoolLookupByUUIDString(fixed_uuid("p1")).name())
step("lookup p1 by uuid", lambda: conn.storagePoolLookupByUUID(uuidlib.UUID(fixed_uuid("p1")).bytes).name())
step("lookup missing by name", lambda: pool("nosuch"))
step("lookup missing by uuid", lambda: conn.storagePoolLookupByUUIDString(fixed_uuid("nosuch")))
step("lookup inactive p1 by target path", lambda: conn.storagePoolLookupByTargetPath(pool_dir("p1")).name())
step("p1 inactive info", lambda: pool_info("p1"))
step("p1 inactive isActive", lambda: pool("p1").isActive())
step("p1 inactive isPersistent", lambda: pool("p1").isPersistent())
step("p1 inactive autostart", lambda: pool("p1").autostart())
step("p1 inactive xml", lambda: pool_xml_desc("p1"))
step("p1 inactive xml inactive", lambda: pool_xml_desc("p1", 1))
step("p1 xml flags 2", lambda: pool_xml_desc("p1", 2))
step("p1 inactive refresh", lambda: pool("p1").refresh(0))
step("p1 inactive destroy", lambda: pool("p1").destroy())
step("p1 inactive numOfVolumes", lambda: pool("p1").numOfVolumes())
step("p1 inactive listVolumes", lambda: pool("p1").listVolumes())
step("p1 inactive listAllVolumes", lambda: pool("p1").listAllVolumes(0))
step("p1 inactive vol lookup", lambda: pool("p1").storageVolLookupByName("x"))
step("p1 inactive vol create", lambda: pool("p1").createXML(vol_xml("x", MIB), 0))
step("p1 inactive delete (no directory)", lambda: pool("p1").delete(0))
step("p1 autostart on", lambda: pool("p1").setAutostart(1))
step("p1 autostart is on", lambda: pool("p1").autostart())
step("p1 autostart off", lambda: pool("p1").setAutostart(0))
step("p1 start without directory", lambda: pool("p1").create(0))
step("p1 state after failed start", lambda: pool("p1").isActive())
events("events: p1 inactive")

# -- listings with every filter
for flags in [0, 1, 2, 4, 8, 16, 32, 64, 128, 1 | 2, 4 | 8, 16 | 32, 2 | 4 | 16 | 64, 64 | 128,
              1 << 19, 1 << 20]:
    step("listAllStoragePools flags %#x" % flags,
         lambda flags=flags: names(conn.listAllStoragePools(flags)))
step("numOfStoragePools 2", lambda: conn.numOfStoragePools())
step("listStoragePools", lambda: sorted(conn.listStoragePools()))
step("numOfDefinedStoragePools 2", lambda: conn.numOfDefinedStoragePools())
step("listDefinedStoragePools", lambda: sorted(conn.listDefinedStoragePools()))

# -- build, with each flag, and start
for flags in [1, 2, 4 | 8, 8, 4]:
    step("p1 build flags %d" % flags, lambda flags=flags: pool("p1").build(flags))
    step("p1 directory after build flags %d" % flags, lambda: os.path.isdir(pool_dir("p1")))
step("p1 build", lambda: pool("p1").build(0))
step("p1 directory mode", lambda: oct(os.stat(pool_dir("p1")).st_mode & 0o777))
step("p1 start flags 8", lambda: pool("p1").create(8))
step("p1 start", lambda: pool("p1").create(0))
events("events: p1 build and start")
step("p1 active info", lambda: pool_info("p1"))
step("p1 active xml", lambda: pool_xml_desc("p1"))
step("p1 active xml inactive", lambda: pool_xml_desc("p1", 1))
step("p1 active isActive", lambda: pool("p1").isActive())
step("p1 build while active", lambda: pool("p1").build(0))
step("p1 start while active", lambda: pool("p1").create(0))
step("p1 undefine while active", lambda: pool("p1").undefine())
step("p1 still defined", lambda: pool("p1").isPersistent())
step("p1 delete while active", lambda: pool("p1").delete(0))
step("p1 refresh flags 1", lambda: pool("p1").refresh(1))
step("p1 refresh", lambda: pool("p1").refresh(0))
step("lookup active p1 by target path", lambda: conn.storagePoolLookupByTargetPath(pool_dir("p1")).name())
step("lookup p1 by target path with trailing slash",
     lambda: conn.storagePoolLookupByTargetPath(pool_dir("p1") + "/").name())
step("lookup p1 by target path with double slash",
     lambda: conn.storagePoolLookupByTargetPath(BASE + "//p1").name())
step("lookup by missing target path", lambda: conn.storagePoolLookupByTargetPath(pool_dir("nosuch")))
step("redefine active p1", lambda: conn.storagePoolDefineXML(
    pool_xml("p1", extra_target="    <permissions>\n      <mode>0750</mode>\n    </permissions>\n"), 0).name())
step("active p1 xml after redefine", lambda: pool_xml_desc("p1"))
step("active p1 xml inactive after redefine", lambda: pool_xml_desc("p1", 1))
for flags in [0, 2, 3, 8, 2 | 4 | 16 | 64, 1 << 20]:
    step("listAllStoragePools flags %#x (p1 active)" % flags,
         lambda flags=flags: names(conn.listAllStoragePools(flags)))
events("events: p1 active")

# -- volumes: create
step("create raw full", lambda: vol_handle(pool("p1").createXML(vol_xml("full.img", 8 * MIB), 0)))
vol_facts("p1", "full.img")
step("create raw sparse", lambda: vol_handle(pool("p1").createXML(vol_xml("sparse.img", 8 * MIB, 0), 0)))
vol_facts("p1", "sparse.img")
step("create raw partial", lambda: vol_handle(pool("p1").createXML(vol_xml("part.img", 8 * MIB, MIB), 0)))
vol_facts("p1", "part.img")
step("over-allocated raw: create", lambda: vol_handle(pool("p1").createXML(vol_xml("over.img", 4 * MIB, 8 * MIB), 0)))
step("over-allocated raw: vol-info", lambda: vol("p1", "over.img").info())
step("over-allocated raw: delete", lambda: vol("p1", "over.img").delete(0))
step("create raw no format", lambda: vol_handle(pool("p1").createXML(vol_xml("nofmt", MIB, 0, fmt=None), 0)))
vol_facts("p1", "nofmt")
step("create qcow2 thin", lambda: vol_handle(pool("p1").createXML(
    vol_xml("thin.qcow2", 64 * MIB, fmt="qcow2", target_extra=COMPAT11), 0)))
vol_facts("p1", "thin.qcow2")
step("create qcow2 metadata", lambda: vol_handle(pool("p1").createXML(
    vol_xml("meta.qcow2", 16 * MIB, 0, fmt="qcow2", target_extra=COMPAT11), 1)))
vol_facts("p1", "meta.qcow2")
step("create qcow2 falloc", lambda: vol_handle(pool("p1").createXML(
    vol_xml("falloc.qcow2", 16 * MIB, 16 * MIB, fmt="qcow2", target_extra=COMPAT11), 1)))
vol_facts("p1", "falloc.qcow2")
step("create qcow2 compat 0.10", lambda: vol_handle(pool("p1").createXML(
    vol_xml("v2.qcow2", 16 * MIB, fmt="qcow2", target_extra="    <compat>0.10</compat>\n"), 0)))
vol_facts("p1", "v2.qcow2")
step("capacity rounding: create", lambda: vol_handle(pool("p1").createXML(
    vol_xml("odd.qcow2", MIB + 512, fmt="qcow2", target_extra=COMPAT11), 0)))
step("capacity rounding: vol-info", lambda: vol("p1", "odd.qcow2").info())
step("compat default: create", lambda: vol_handle(pool("p1").createXML(
    vol_xml("nocompat.qcow2", 16 * MIB, fmt="qcow2"), 0)))
step("compat default: vol-info", lambda: vol("p1", "nocompat.qcow2").info())
step("compat default: vol-xml", lambda: norm(vol("p1", "nocompat.qcow2").XMLDesc(0)))
step("partial reservation: create", lambda: vol_handle(pool("p1").createXML(
    vol_xml("partial.qcow2", 16 * MIB, 4 * MIB, fmt="qcow2", target_extra=COMPAT11), 0)))
step("partial reservation: vol-info", lambda: vol("p1", "partial.qcow2").info())
step("falloc without the flag: create", lambda: vol_handle(pool("p1").createXML(
    vol_xml("full-noflag.qcow2", 16 * MIB, 16 * MIB, fmt="qcow2", target_extra=COMPAT11), 0)))
step("falloc without the flag: vol-info", lambda: vol("p1", "full-noflag.qcow2").info())
step("create qcow2 lazy refcounts", lambda: vol_handle(pool("p1").createXML(
    vol_xml("lazy.qcow2", 16 * MIB, fmt="qcow2",
            target_extra=COMPAT11 + "    <features>\n      <lazy_refcounts/>\n    </features>\n"), 0)))
vol_facts("p1", "lazy.qcow2")
step("create qcow2 cluster size", lambda: vol_handle(pool("p1").createXML(
    vol_xml("cluster.qcow2", 16 * MIB, fmt="qcow2",
            target_extra=COMPAT11 + "    <clusterSize unit='KiB'>128</clusterSize>\n"), 0)))
vol_facts("p1", "cluster.qcow2")
step("create permissions", lambda: vol_handle(pool("p1").createXML(vol_xml(
    "perm.img", MIB, 0, target_extra="    <permissions>\n      <mode>0640</mode>\n    </permissions>\n"), 0)))
vol_facts("p1", "perm.img")
step("create overlay", lambda: vol_handle(pool("p1").createXML(
    "<volume>\n  <name>overlay.qcow2</name>\n  <target>\n    <format type='qcow2'/>\n%s  </target>\n"
    "  <backingStore>\n    <path>%s</path>\n    <format type='qcow2'/>\n  </backingStore>\n</volume>\n"
    % (COMPAT11, os.path.join(pool_dir("p1"), "thin.qcow2")), 0)))
step("vol-info p1/overlay.qcow2", lambda: vol("p1", "overlay.qcow2").info())
events("events: volume creates")

# -- volumes: create refusals
step("create flags 0x80", lambda: pool("p1").createXML(vol_xml("x.img", MIB), 0x80))
step("create malformed", lambda: pool("p1").createXML("<volume><name>x</name>", 0))
step("create empty document", lambda: pool("p1").createXML("", 0))
step("create wrong root", lambda: pool("p1").createXML("<pool/>", 0))
step("create no name", lambda: pool("p1").createXML("<volume><capacity>1</capacity></volume>", 0))
step("create no capacity", lambda: pool("p1").createXML(vol_xml("nocap.img"), 0))
step("vol nocap.img exists", lambda: vol("p1", "nocap.img").info())
step("create negative capacity", lambda: pool("p1").createXML(
    "<volume><name>x</name><capacity>-5</capacity></volume>", 0))
step("create bad unit", lambda: pool("p1").createXML(
    "<volume><name>x</name><capacity unit='ZiB'>1</capacity></volume>", 0))
step("create bogus format", lambda: pool("p1").createXML(vol_xml("x", MIB, fmt="bogus"), 0))
step("compat check: create compat 2.0", lambda: pool("p1").createXML(
    vol_xml("x", MIB, fmt="qcow2", target_extra="    <compat>2.0</compat>\n"), 0))
step("create bad mode", lambda: pool("p1").createXML(
    vol_xml("x", MIB, target_extra="    <permissions>\n      <mode>0999</mode>\n    </permissions>\n"), 0))
step("create name with slash", lambda: pool("p1").createXML(vol_xml("a/b", MIB), 0))
step("create name dotdot", lambda: pool("p1").createXML(vol_xml("..", MIB), 0))
step("create existing name", lambda: pool("p1").createXML(vol_xml("full.img", MIB), 0))
step("create raw with PREALLOC_METADATA", lambda: pool("p1").createXML(vol_xml("x.img", MIB), 1))
step("create VALIDATE schema-invalid", lambda: pool("p1").createXML(
    vol_xml("x.img", MIB, extra="  <bogus/>\n"), 4))
step("VALIDATE valid: create", lambda: vol_handle(pool("p1").createXML(vol_xml("valid.img", MIB, 0), 4)))
step("VALIDATE valid: delete", lambda: vol("p1", "valid.img").delete(0))
step("encryption: create", lambda: pool("p1").createXML(vol_xml(
    "enc.img", MIB, target_extra="    <encryption format='luks'/>\n"), 0))
step("other formats: create vmdk", lambda: vol_handle(pool("p1").createXML(vol_xml("v.vmdk", MIB, fmt="vmdk"), 0)))
step("other formats: delete vmdk", lambda: vol("p1", "v.vmdk").delete(0))
step("hidden names: create", lambda: vol_handle(pool("p1").createXML(vol_xml(".hidden.img", MIB, 0), 0)))
step("hidden names: delete", lambda: vol("p1", ".hidden.img").delete(0))
step("volume types: create block", lambda: vol_handle(pool("p1").createXML(
    "<volume type='block'><name>blk.img</name><capacity>1048576</capacity><allocation>0</allocation></volume>", 0)))
step("volume types: delete", lambda: vol("p1", "blk.img").delete(0))
step("create raw with backing store", lambda: pool("p1").createXML(
    "<volume><name>x.img</name><capacity>1048576</capacity><target><format type='raw'/></target>"
    "<backingStore><path>%s</path></backingStore></volume>"
    % os.path.join(pool_dir("p1"), "full.img"), 0))
step("create too big", lambda: pool("p1").createXML(vol_xml("huge.img", 1 << 50), 0))
events("events: volume create refusals")

# -- volumes: lookups and listings
FULL = os.path.join(pool_dir("p1"), "full.img")
step("numOfVolumes", lambda: pool("p1").numOfVolumes())
step("listVolumes", lambda: sorted(pool("p1").listVolumes()))
step("listAllVolumes", lambda: names(pool("p1").listAllVolumes(0)))
step("listAllVolumes flags 1", lambda: pool("p1").listAllVolumes(1))
step("vol lookup by name", lambda: vol_handle(vol("p1", "full.img")))
step("vol lookup missing by name", lambda: vol("p1", "nosuch"))
step("vol lookup by key", lambda: vol_handle(conn.storageVolLookupByKey(FULL)))
step("vol lookup by path", lambda: vol_handle(conn.storageVolLookupByPath(FULL)))
step("vol lookup by unclean path", lambda: vol_handle(
    conn.storageVolLookupByPath(BASE + "//p1/./full.img")))
step("vol lookup missing by key", lambda: conn.storageVolLookupByKey(FULL + ".nosuch"))
step("vol lookup missing by path", lambda: conn.storageVolLookupByPath(FULL + ".nosuch"))
step("vol pool", lambda: vol("p1", "full.img").storagePoolLookupByVolume().name())
step("vol info flags 2", lambda: vol("p1", "full.img").infoFlags(2))
step("vol xml flags 1", lambda: vol("p1", "full.img").XMLDesc(1))


def drop_file():
    with open(os.path.join(pool_dir("p1"), "dropped.img"), "wb") as f:
        f.truncate(MIB)
    return "ok"


step("a file dropped into the directory", drop_file)
step("dropped file: listAllVolumes before refresh", lambda: names(pool("p1").listAllVolumes(0)))
step("p1 refresh after drop", lambda: pool("p1").refresh(0))
step("listAllVolumes after refresh", lambda: names(pool("p1").listAllVolumes(0)))
step("p1 info after refresh", lambda: pool_info("p1"))
step("p1 xml after refresh", lambda: pool_xml_desc("p1"))
events("events: lookups")

# -- create-from and clone
def clone_xml(src, new):
    xml = vol("p1", src).XMLDesc(0)
    return re.sub(r"<name>[^<]*</name>", "<name>%s</name>" % new, xml, count=1)


step("clone raw", lambda: vol_handle(pool("p1").createXMLFrom(clone_xml("part.img", "part-c.img"),
                                                              vol("p1", "part.img"), 0)))
step("exact clone: vol-info", lambda: vol("p1", "part-c.img").info())
step("exact clone: vol-xml", lambda: norm(vol("p1", "part-c.img").XMLDesc(0)))
step("exact clone: file", lambda: file_facts(os.path.join(pool_dir("p1"), "part-c.img")))
step("clone raw bytes", lambda: norm(read_file(os.path.join(pool_dir("p1"), "part-c.img"))))
step("clone qcow2", lambda: vol_handle(pool("p1").createXMLFrom(clone_xml("thin.qcow2", "thin-c.qcow2"),
                                                                vol("p1", "thin.qcow2"), 0)))
vol_facts("p1", "thin-c.qcow2")
step("clone qcow2 PREALLOC_METADATA", lambda: vol_handle(pool("p1").createXMLFrom(
    clone_xml("meta.qcow2", "meta-c.qcow2"), vol("p1", "meta.qcow2"), 1)))
vol_facts("p1", "meta-c.qcow2")
step("clone REFLINK", lambda: pool("p1").createXMLFrom(clone_xml("full.img", "full-r.img"),
                                                        vol("p1", "full.img"), 2))
step("create-from REFLINK converting", lambda: pool("p1").createXMLFrom(
    vol_xml("conv-r.img", 64 * MIB), vol("p1", "thin.qcow2"), 2))
step("clone flags 8", lambda: pool("p1").createXMLFrom(clone_xml("full.img", "x.img"),
                                                        vol("p1", "full.img"), 8))
step("clone to existing name", lambda: pool("p1").createXMLFrom(clone_xml("full.img", "sparse.img"),
                                                                 vol("p1", "full.img"), 0))
step("clone from missing", lambda: pool("p1").createXMLFrom(vol_xml("x.img", MIB),
                                                             vol("p1", "nosuch"), 0))
step("create-from malformed", lambda: pool("p1").createXMLFrom("<volume>", vol("p1", "full.img"), 0))
step("create-from qcow2 to raw without capacity", lambda: vol_handle(pool("p1").createXMLFrom(
    vol_xml("fromq.img"), vol("p1", "thin.qcow2"), 0)))
vol_facts("p1", "fromq.img")
step("create-from raw to qcow2 without capacity", lambda: vol_handle(pool("p1").createXMLFrom(
    vol_xml("fromr.qcow2", fmt="qcow2", target_extra=COMPAT11), vol("p1", "part.img"), 0)))
vol_facts("p1", "fromr.qcow2")
step("create-from raw to raw smaller capacity", lambda: vol_handle(pool("p1").createXMLFrom(
    vol_xml("small.img", MIB, 0), vol("p1", "part.img"), 0)))
vol_facts("p1", "small.img")
step("create-from raw to raw allocated", lambda: vol_handle(pool("p1").createXMLFrom(
    vol_xml("alloc.img", 8 * MIB), vol("p1", "sparse.img"), 0)))
vol_facts("p1", "alloc.img")
step("create-from VALIDATE schema-invalid", lambda: pool("p1").createXMLFrom(
    vol_xml("x.img", MIB, extra="  <bogus/>\n"), vol("p1", "full.img"), 4))
events("events: clones")

# -- upload and download
DATA = bytes((i * 7 + 3) % 251 for i in range(300000))
step("upload", lambda: upload("p1", "sparse.img", DATA, offset=4096))
step("refresh event after upload", lambda: wait_refresh_event("p1"))
vol_facts("p1", "sparse.img")
step("download all", lambda: download("p1", "sparse.img"))
step("download range", lambda: download("p1", "sparse.img", offset=4096, length=len(DATA)))
step("download sparse", lambda: download("p1", "sparse.img", flags=1))
step("download past the end", lambda: download("p1", "sparse.img", offset=16 * MIB))
step("download flags 2", lambda: download("p1", "sparse.img", flags=2))
step("download missing", lambda: download("p1", "nosuch"))
SPARSE_DATA = DATA[:65536] + bytes(1 << 20) + DATA[:65536]
step("create sp.img", lambda: vol_handle(pool("p1").createXML(vol_xml("sp.img", 4 * MIB), 0)))
step("upload sparse", lambda: upload("p1", "sp.img", SPARSE_DATA, flags=1,
                                     holes=[(65536, 1 << 20)]))
step("refresh event after sparse upload", lambda: wait_refresh_event("p1"))
step("sp.img bytes", lambda: norm(read_file(os.path.join(pool_dir("p1"), "sp.img"))[:len(SPARSE_DATA)]))
step("sparse upload: sp.img size", lambda: vol("p1", "sp.img").info()[1])
step("sparse upload: download sparse sp.img", lambda: download("p1", "sp.img", length=len(SPARSE_DATA), flags=1))
step("upload past the end", lambda: upload("p1", "nofmt", DATA, offset=2 * MIB))
step("refresh event after upload past the end", lambda: wait_refresh_event("p1"))
step("nofmt after upload past the end", lambda: file_facts(os.path.join(pool_dir("p1"), "nofmt")))
step("upload flags 2", lambda: upload("p1", "sparse.img", DATA, flags=2))
step("upload missing", lambda: upload("p1", "nosuch", DATA))
events("events: streams")

# -- resize
RESIZE = [
    ("grow", "sparse.img", 16 * MIB, 0),
    ("grow allocate", "sparse.img", 24 * MIB, 1),
    ("grow delta", "sparse.img", 4 * MIB, 2),
    ("same size", "sparse.img", 28 * MIB, 0),
    ("shrink without flag", "sparse.img", 20 * MIB, 0),
    ("shrink", "sparse.img", 20 * MIB, 4),
    ("shrink delta", "sparse.img", 4 * MIB, 2 | 4),
    ("shrink below allocation", "full.img", 4 * MIB, 4),
    ("shrink delta past zero", "nofmt", 1 << 40, 2 | 4),
    ("flags 8", "sparse.img", 32 * MIB, 8),
    ("grow allocate too big", "sparse.img", 1 << 50, 1),
    ("grow delta huge", "sparse.img", (1 << 63) - 1, 2),
    ("qcow2 grow", "thin.qcow2", 128 * MIB, 0),
    ("qcow2 grow allocate", "thin.qcow2", 192 * MIB, 1),
    ("qcow2 shrink", "thin-c.qcow2", 32 * MIB, 4),
    ("qcow2 grow after shrink", "thin-c.qcow2", 96 * MIB, 0),
    ("qcow2 falloc shrink below allocation", "falloc.qcow2", 8 * MIB, 4),
]
for what, name, capacity, flags in RESIZE:
    step("resize %s" % what, lambda name=name, capacity=capacity, flags=flags:
         vol("p1", name).resize(capacity, flags))
    step("resize %s: vol-info" % what, lambda name=name: vol("p1", name).info())
step("full.img after refused shrink", lambda: file_facts(FULL))
events("events: resizes")

# -- wipe
step("create wipe.img", lambda: vol_handle(pool("p1").createXML(vol_xml("wipe.img", MIB), 0)))
step("upload into wipe.img", lambda: upload("p1", "wipe.img", DATA[:65536]))
step("refresh event after upload into wipe.img", lambda: wait_refresh_event("p1"))
for alg in range(11):
    step("wipe algorithms: %d" % alg, lambda alg=alg: vol("p1", "wipe.img").wipePattern(alg, 0))
step("wipe algorithms: wipe.img after", lambda: vol("p1", "wipe.img").info())
step("wipePattern flags 1", lambda: vol("p1", "wipe.img").wipePattern(0, 1))
step("wipe", lambda: vol("p1", "full.img").wipe(0))
step("wipe flags 1", lambda: vol("p1", "full.img").wipe(1))
step("full.img after wipe", lambda: [vol("p1", "full.img").info(), norm(read_file(FULL))])
step("wiped sparse raw: wipe", lambda: vol("p1", "part.img").wipe(0))
step("wiped sparse raw: vol-info", lambda: vol("p1", "part.img").info())
step("wiped qcow2: wipe", lambda: vol("p1", "lazy.qcow2").wipe(0))
step("wiped qcow2: vol-info", lambda: vol("p1", "lazy.qcow2").info())
step("wiped qcow2: vol-xml", lambda: norm(vol("p1", "lazy.qcow2").XMLDesc(0)))
step("wipe missing", lambda: vol("p1", "nosuch").wipe(0))
events("events: wipes")

# -- delete
step("delete flags 1", lambda: vol("p1", "full.img").delete(1))
step("delete flags 2", lambda: vol("p1", "full.img").delete(2))
step("delete", lambda: vol("p1", "full.img").delete(0))
step("vol lookup deleted by key", lambda: conn.storageVolLookupByKey(FULL))
step("full.img gone", lambda: os.path.exists(FULL))
step("listAllVolumes after delete", lambda: names(pool("p1").listAllVolumes(0)))
events("events: deletes")

# -- a second pool: copies between pools
step("define p2", lambda: conn.storagePoolDefineXML(pool_xml("p2"), 0).name())
step("p2 start with build", lambda: pool("p2").create(1))
step("copy between pools", lambda: vol_handle(pool("p2").createXMLFrom(
    vol_xml("copy.img", 8 * MIB, 0), vol("p1", "part.img"), 0)))
step("copy between pools bytes", lambda: norm(read_file(os.path.join(pool_dir("p2"), "copy.img"))))
step("vol lookup by key in p2", lambda: vol_handle(
    conn.storageVolLookupByKey(os.path.join(pool_dir("p2"), "copy.img"))))
STASH = {}
step("keep a handle of p2/copy.img", lambda: STASH.setdefault("copy", vol("p2", "copy.img")).name())
step("p2 destroy", lambda: pool("p2").destroy())
step("p2 stopped info", lambda: pool_info("p2"))
step("p2 stopped xml", lambda: pool_xml_desc("p2"))
step("p2 stopped xml inactive", lambda: pool_xml_desc("p2", 1))


def stashed(key):
    if key not in STASH:
        raise Missing(key)
    return STASH[key]


step("copy from an inactive pool", lambda: pool("p1").createXMLFrom(
    vol_xml("x.img", MIB), stashed("copy"), 0))
step("info of a volume of an inactive pool", lambda: stashed("copy").info())
events("events: second pool")

# -- p1 stopped: what stays known, and delete
step("p1 destroy", lambda: pool("p1").destroy())
step("p1 destroy again", lambda: pool("p1").destroy())
step("p1 stopped info", lambda: pool_info("p1"))
step("p1 stopped xml", lambda: pool_xml_desc("p1"))
step("p1 stopped xml inactive", lambda: pool_xml_desc("p1", 1))
step("vol lookup by key in stopped p1", lambda: conn.storageVolLookupByKey(
    os.path.join(pool_dir("p1"), "sparse.img")))
step("p1 delete non-empty", lambda: pool("p1").delete(0))
step("p1 delete flags 1", lambda: pool("p1").delete(1))


def empty_p1():
    for n in os.listdir(pool_dir("p1")):
        os.unlink(os.path.join(pool_dir("p1"), n))
    return "ok"


step("p1 emptied", empty_p1)
step("p1 delete", lambda: pool("p1").delete(0))
step("p1 directory after delete", lambda: os.path.exists(pool_dir("p1")))
step("p1 delete again", lambda: pool("p1").delete(0))
step("p1 start with build flags 1", lambda: pool("p1").create(1))
step("p1 directory mode after start with build", lambda: oct(os.stat(pool_dir("p1")).st_mode & 0o777))
step("p1 destroy after start with build", lambda: pool("p1").destroy())
step("p1 start with build flags 2", lambda: pool("p1").create(2))
step("p1 start with build flags 4", lambda: pool("p1").create(4))
step("p1 start with build flags 6", lambda: pool("p1").create(6))
step("p1 active after build flags", lambda: pool("p1").isActive())
step("p1 undefine", lambda: pool("p1").undefine())
step("p1 undefine again", lambda: conn.storagePoolLookupByUUIDString(fixed_uuid("p1")).undefine())
step("p2 undefine", lambda: pool("p2").undefine())
step("p4 undefine", lambda: pool("p4").undefine())
events("events: p1 end")

# -- transient pools
step("create t1 with build", lambda: conn.storagePoolCreateXML(pool_xml("t1"), 1).name())
step("t1 isPersistent", lambda: pool("t1").isPersistent())
step("t1 isActive", lambda: pool("t1").isActive())
step("t1 autostart", lambda: pool("t1").autostart())
step("t1 set autostart", lambda: pool("t1").setAutostart(1))
step("t1 set autostart off", lambda: pool("t1").setAutostart(0))
step("t1 undefine", lambda: pool("t1").undefine())
step("t1 xml inactive", lambda: pool_xml_desc("t1", 1))
step("listAllStoragePools transient", lambda: names(conn.listAllStoragePools(8)))
step("create t1 again", lambda: conn.storagePoolCreateXML(pool_xml("t1"), 0))
step("define t1 while transient", lambda: conn.storagePoolDefineXML(pool_xml("t1"), 0).name())
step("t1 persistent after define", lambda: pool("t1").isPersistent())
step("t1 destroy", lambda: pool("t1").destroy())
step("t1 after destroy", lambda: pool("t1").isActive())
step("t1 undefine after define", lambda: pool("t1").undefine())
step("create t2 without directory", lambda: conn.storagePoolCreateXML(pool_xml("t2"), 0))
step("create t2 flags 2", lambda: conn.storagePoolCreateXML(pool_xml("t2"), 2))
step("t2 after create flags 2", lambda: pool("t2").isActive())
step("create t2 flags 4", lambda: conn.storagePoolCreateXML(pool_xml("t2"), 4))
step("create t2 flags 6", lambda: conn.storagePoolCreateXML(pool_xml("t2"), 6))
step("create t2 flags 8", lambda: conn.storagePoolCreateXML(pool_xml("t2"), 8))
step("create t2 with build", lambda: conn.storagePoolCreateXML(pool_xml("t2"), 1).name())
step("t2 destroy", lambda: pool("t2").destroy())
step("t2 gone", lambda: pool("t2"))
step("create malformed", lambda: conn.storagePoolCreateXML("<pool", 0))
step("other pool types: create logical", lambda: conn.storagePoolCreateXML(
    "<pool type='logical'><name>lv</name><source><name>vg</name></source>"
    "<target><path>/dev/vg</path></target></pool>", 0))
events("events: transient pools")

print(json.dumps(RECORDS, indent=1))
