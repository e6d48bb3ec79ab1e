//! Connection-level procedures: open and close, features, versions, capabilities, event
//! registrations.
//!
//! Owns: what qpoold says about itself (type `storage`, its version, libvirt 9.0's library
//! version, the host name, the capabilities of a storage-only driver), the two host-level
//! answers virt-manager needs to open a connection (no domains; the node's info), and the
//! connection state changes a client asks for.
//! Must not: touch pools or volumes.

use super::{Ctx, allow_flags, driver, feature_before_open, xml};
use crate::rpc::messages::{
    AuthListRet, CharArray32, ConnectFindStoragePoolSourcesArgs, ConnectGetCapabilitiesRet,
    ConnectGetHostnameRet, ConnectGetLibVersionRet, ConnectGetStoragePoolCapabilitiesArgs,
    ConnectGetStoragePoolCapabilitiesRet, ConnectGetSysinfoArgs, ConnectGetTypeRet,
    ConnectGetUriRet, ConnectGetVersionRet, ConnectIsSecureRet, ConnectListAllDomainsArgs,
    ConnectListAllDomainsRet, ConnectOpenArgs, ConnectStoragePoolEventDeregisterAnyArgs,
    ConnectStoragePoolEventRegisterAnyArgs, ConnectStoragePoolEventRegisterAnyRet,
    ConnectSupportsFeatureArgs, ConnectSupportsFeatureRet, NodeGetInfoRet, XmlRet,
};
use crate::rpc::proto::{RemoteError, flags};

/// libvirt version qpoold reports as its library version (the protocol it speaks).
pub const LIB_VERSION: u64 = 9_000_000;

/// `virsh capabilities` on a storage connection.
const CAPABILITIES: &str = "<capabilities>\n\n  <host>\n    <cpu>\n      <arch>x86_64</arch>\n    </cpu>\n  </host>\n\n  <pool>\n    <enum name='type'>\n      <value>dir</value>\n    </enum>\n  </pool>\n\n</capabilities>\n";

/// `virsh pool-capabilities`.
const POOL_CAPABILITIES: &str = "<storagepoolCapabilities>\n  <pool type='dir' supported='yes'>\n    <volOptions>\n      <defaultFormat type='raw'/>\n      <enum name='targetFormatType'>\n        <value>raw</value>\n        <value>qcow2</value>\n      </enum>\n    </volOptions>\n  </pool>\n</storagepoolCapabilities>\n";

/// Encodes qpool's own version as libvirt encodes versions (major·10⁶ + minor·10³ + micro).
fn qpool_version() -> u64 {
    let mut parts = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    let micro = parts.next().unwrap_or(0);
    major * 1_000_000 + minor * 1000 + micro
}

/// `REMOTE_PROC_AUTH_LIST`: no authentication.
pub fn auth_list(_: &Ctx<'_>, (): ()) -> Result<AuthListRet, RemoteError> {
    Ok(AuthListRet {
        types: vec![flags::AUTH_NONE],
    })
}

/// `REMOTE_PROC_CONNECT_OPEN`: any name is accepted; `VIR_CONNECT_RO` makes the
/// connection read-only.
pub fn connect_open(ctx: &Ctx<'_>, args: ConnectOpenArgs) -> Result<(), RemoteError> {
    if ctx.conn.is_open() {
        return Err(RemoteError::internal("connection already open"));
    }
    log::debug!(
        "open {:?} flags {:#x}",
        args.name.as_deref().unwrap_or(""),
        args.flags
    );
    ctx.conn.open(args.flags & flags::CONNECT_RO != 0);
    Ok(())
}

/// `REMOTE_PROC_CONNECT_CLOSE`.
pub fn connect_close(ctx: &Ctx<'_>, (): ()) -> Result<(), RemoteError> {
    ctx.conn.close();
    Ok(())
}

/// `REMOTE_PROC_CONNECT_SUPPORTS_FEATURE`: keepalive (also before open), event callbacks
/// and close callbacks.
pub fn connect_supports_feature(
    ctx: &Ctx<'_>,
    args: ConnectSupportsFeatureArgs,
) -> Result<ConnectSupportsFeatureRet, RemoteError> {
    if !ctx.conn.is_open() && !feature_before_open(&args) {
        return Err(RemoteError::not_open());
    }
    if args.feature == flags::DRV_FEATURE_PROGRAM_KEEPALIVE {
        ctx.conn.enable_keepalive();
    }
    let supported = matches!(
        args.feature,
        flags::DRV_FEATURE_PROGRAM_KEEPALIVE
            | flags::DRV_FEATURE_REMOTE_EVENT_CALLBACK
            | flags::DRV_FEATURE_REMOTE_CLOSE_CALLBACK
    );
    Ok(ConnectSupportsFeatureRet {
        supported: i32::from(supported),
    })
}

/// `REMOTE_PROC_CONNECT_GET_TYPE`.
pub fn connect_get_type(_: &Ctx<'_>, (): ()) -> Result<ConnectGetTypeRet, RemoteError> {
    Ok(ConnectGetTypeRet {
        type_: "storage".into(),
    })
}

/// `REMOTE_PROC_CONNECT_GET_VERSION`: qpool's own version.
pub fn connect_get_version(_: &Ctx<'_>, (): ()) -> Result<ConnectGetVersionRet, RemoteError> {
    Ok(ConnectGetVersionRet {
        hv_ver: qpool_version(),
    })
}

/// `REMOTE_PROC_CONNECT_GET_LIB_VERSION`: the libvirt version whose protocol qpoold speaks.
pub fn connect_get_lib_version(
    _: &Ctx<'_>,
    (): (),
) -> Result<ConnectGetLibVersionRet, RemoteError> {
    Ok(ConnectGetLibVersionRet {
        lib_ver: LIB_VERSION,
    })
}

/// `REMOTE_PROC_CONNECT_GET_HOSTNAME`.
pub fn connect_get_hostname(_: &Ctx<'_>, (): ()) -> Result<ConnectGetHostnameRet, RemoteError> {
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    Ok(ConnectGetHostnameRet { hostname })
}

/// `REMOTE_PROC_CONNECT_GET_URI`.
pub fn connect_get_uri(_: &Ctx<'_>, (): ()) -> Result<ConnectGetUriRet, RemoteError> {
    Ok(ConnectGetUriRet {
        uri: "storage:///system".into(),
    })
}

/// `REMOTE_PROC_CONNECT_IS_SECURE`: a local socket is.
pub fn connect_is_secure(_: &Ctx<'_>, (): ()) -> Result<ConnectIsSecureRet, RemoteError> {
    Ok(ConnectIsSecureRet { secure: 1 })
}

/// `REMOTE_PROC_CONNECT_GET_CAPABILITIES`.
pub fn connect_get_capabilities(
    _: &Ctx<'_>,
    (): (),
) -> Result<ConnectGetCapabilitiesRet, RemoteError> {
    Ok(ConnectGetCapabilitiesRet {
        capabilities: CAPABILITIES.into(),
    })
}

/// `REMOTE_PROC_CONNECT_GET_STORAGE_POOL_CAPABILITIES`.
pub fn connect_get_storage_pool_capabilities(
    _: &Ctx<'_>,
    args: ConnectGetStoragePoolCapabilitiesArgs,
) -> Result<ConnectGetStoragePoolCapabilitiesRet, RemoteError> {
    allow_flags(args.flags, 0, "virConnectGetStoragePoolCapabilities")?;
    Ok(ConnectGetStoragePoolCapabilitiesRet {
        capabilities: POOL_CAPABILITIES.into(),
    })
}

/// `REMOTE_PROC_CONNECT_GET_SYSINFO`: not supported, as on libvirt's storage driver.
pub fn connect_get_sysinfo(_: &Ctx<'_>, _: ConnectGetSysinfoArgs) -> Result<(), RemoteError> {
    Err(RemoteError::no_support("virConnectGetSysinfo"))
}

/// `REMOTE_PROC_CONNECT_FIND_STORAGE_POOL_SOURCES`: the registry answers as libvirt's
/// storage driver does for each pool type (a directory pool has no sources to discover).
pub fn connect_find_storage_pool_sources(
    ctx: &Ctx<'_>,
    args: ConnectFindStoragePoolSourcesArgs,
) -> Result<XmlRet, RemoteError> {
    ctx.registry
        .find_pool_sources(&args.type_)
        .map(xml)
        .map_err(driver)
}

/// `REMOTE_PROC_CONNECT_LIST_ALL_DOMAINS`: qpoold runs no domains. libvirt's storage daemon
/// refuses the call; qpoold answers the empty list so that virt-manager, which gives up on a
/// connection that cannot list domains, opens it.
pub fn connect_list_all_domains(
    _: &Ctx<'_>,
    _: ConnectListAllDomainsArgs,
) -> Result<ConnectListAllDomainsRet, RemoteError> {
    Ok(ConnectListAllDomainsRet {
        domains: Vec::new(),
        ret: 0,
    })
}

/// `REMOTE_PROC_NODE_GET_INFO`: this host's architecture, memory and CPUs, which
/// virt-manager reads when it opens a connection (libvirt's storage daemon refuses the
/// call). The CPUs count as one node and one socket of single-threaded cores.
pub fn node_get_info(_: &Ctx<'_>, (): ()) -> Result<NodeGetInfoRet, RemoteError> {
    let cpus = nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .and_then(|n| i32::try_from(n).ok())
        .unwrap_or(1)
        .max(1);
    Ok(NodeGetInfoRet {
        model: CharArray32::new(std::env::consts::ARCH),
        memory: proc_value("/proc/meminfo", "MemTotal").unwrap_or(0),
        cpus,
        mhz: proc_value("/proc/cpuinfo", "cpu MHz")
            .and_then(|m| i32::try_from(m).ok())
            .unwrap_or(0),
        nodes: 1,
        sockets: 1,
        cores: cpus,
        threads: 1,
    })
}

/// The whole number at the start of the value of the first `key: value` line of a /proc
/// file (`MemTotal:  16318384 kB` gives 16318384; `cpu MHz : 2794.748` gives 2794).
fn proc_value(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text
        .lines()
        .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))?;
    let value = line.split(':').nth(1)?.trim();
    let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `REMOTE_PROC_CONNECT_REGISTER_CLOSE_CALLBACK`: nothing to do; the client learns of a
/// close from the socket.
pub fn connect_register_close_callback(_: &Ctx<'_>, (): ()) -> Result<(), RemoteError> {
    Ok(())
}

/// `REMOTE_PROC_CONNECT_UNREGISTER_CLOSE_CALLBACK`.
pub fn connect_unregister_close_callback(_: &Ctx<'_>, (): ()) -> Result<(), RemoteError> {
    Ok(())
}

/// `REMOTE_PROC_CONNECT_STORAGE_POOL_EVENT_REGISTER_ANY`: lifecycle (0) or refresh (1)
/// events, of one pool or of all.
pub fn connect_storage_pool_event_register_any(
    ctx: &Ctx<'_>,
    args: ConnectStoragePoolEventRegisterAnyArgs,
) -> Result<ConnectStoragePoolEventRegisterAnyRet, RemoteError> {
    if !(flags::STORAGE_POOL_EVENT_ID_LIFECYCLE..=flags::STORAGE_POOL_EVENT_ID_REFRESH)
        .contains(&args.event_id)
    {
        return Err(RemoteError::invalid_arg(format!(
            "unsupported storage pool event ID {}",
            args.event_id
        )));
    }
    let callback_id = ctx
        .conn
        .register_pool_events(args.event_id, args.pool.map(|p| p.uuid));
    Ok(ConnectStoragePoolEventRegisterAnyRet { callback_id })
}

/// `REMOTE_PROC_CONNECT_STORAGE_POOL_EVENT_DEREGISTER_ANY`.
pub fn connect_storage_pool_event_deregister_any(
    ctx: &Ctx<'_>,
    args: ConnectStoragePoolEventDeregisterAnyArgs,
) -> Result<(), RemoteError> {
    if ctx.conn.deregister_pool_events(args.callback_id) {
        Ok(())
    } else {
        Err(RemoteError::invalid_arg(format!(
            "callback ID {} not registered",
            args.callback_id
        )))
    }
}
