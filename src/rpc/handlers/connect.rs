//! Connection-level procedures: open and close, features, versions, capabilities, event
//! registrations, and the identity a forwarding daemon sets.
//!
//! Owns: what qpoold says about itself (type `storage`, its version, libvirt 9.0's library
//! version, the host name, the capabilities of a storage-only driver), the two host-level
//! answers virt-manager needs to open a connection (no domains; the node's info), the
//! connection state changes a client asks for, and the checks libvirt 9.0 applies to the
//! typed parameters of `CONNECT_SET_IDENTITY` (`virIdentitySetParameters`).
//! Must not: touch pools or volumes.

use super::{Ctx, allow_flags, driver, feature_before_open, xml};
use crate::rpc::messages::{
    AuthListRet, CharArray32, ConnectFindStoragePoolSourcesArgs, ConnectGetCapabilitiesRet,
    ConnectGetHostnameRet, ConnectGetLibVersionRet, ConnectGetStoragePoolCapabilitiesArgs,
    ConnectGetStoragePoolCapabilitiesRet, ConnectGetSysinfoArgs, ConnectGetTypeRet,
    ConnectGetUriRet, ConnectGetVersionRet, ConnectIsSecureRet, ConnectListAllDomainsArgs,
    ConnectListAllDomainsRet, ConnectOpenArgs, ConnectSetIdentityArgs,
    ConnectStoragePoolEventDeregisterAnyArgs, ConnectStoragePoolEventRegisterAnyArgs,
    ConnectStoragePoolEventRegisterAnyRet, ConnectSupportsFeatureArgs, ConnectSupportsFeatureRet,
    NodeGetInfoRet, TypedParam, XmlRet, typed_param_type_name,
};
use crate::rpc::proto::{RemoteError, codes, domains, flags};

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

/// The identity parameters libvirt 9.0 accepts (`virIdentitySetParameters`), with the
/// `virTypedParameterType` each must have: strings (7), unsigned (4) and signed (3) longs.
const IDENTITY_PARAMS: &[(&str, i32)] = &[
    ("user-name", 7),
    ("unix-user-id", 4),
    ("group-name", 7),
    ("unix-group-id", 4),
    ("process-id", 3),
    ("process-time", 4),
    ("sasl-user-name", 7),
    ("x509-distinguished-name", 7),
    ("selinux-context", 7),
    ("system.token", 7),
];

/// VIR_TYPED_PARAM_FIELD_LENGTH: a field name and its NUL must fit in 80 bytes.
const TYPED_PARAM_FIELD_LENGTH: usize = 80;

/// Checks identity parameters as libvirt 9.0 does (`virTypedParamsDeserialize`, then
/// `virTypedParamsValidate` against [`IDENTITY_PARAMS`]), with libvirt's error for the first
/// parameter that fails: a field name too long, a name given twice, a name of the wrong
/// type, or a name libvirt does not know. Like libvirt, it walks the names in sorted order.
pub fn check_identity(params: &[TypedParam]) -> Result<(), RemoteError> {
    if let Some(p) = params
        .iter()
        .find(|p| p.field.len() >= TYPED_PARAM_FIELD_LENGTH)
    {
        return Err(RemoteError::new(
            codes::INTERNAL_ERROR,
            domains::NONE,
            "internal error: %s",
            format!("parameter {} too big for destination", p.field),
        ));
    }
    let mut sorted: Vec<&TypedParam> = params.iter().collect();
    sorted.sort_by(|a, b| a.field.cmp(&b.field));
    let mut keys = IDENTITY_PARAMS.to_vec();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    let invalid = |detail: String| {
        RemoteError::new(
            codes::INVALID_ARG,
            domains::NONE,
            "invalid argument: %s",
            detail,
        )
    };
    let (mut i, mut j) = (0, 0);
    let mut last: Option<&str> = None;
    while i < sorted.len() && j < keys.len() {
        let (name, want) = keys[j];
        let p = sorted[i];
        if p.field != name {
            j += 1;
            continue;
        }
        if last == Some(name) {
            return Err(invalid(format!("parameter '{name}' occurs multiple times")));
        }
        if p.value.type_number() != want {
            return Err(invalid(format!(
                "invalid type '{}' for parameter '{name}', expected '{}'",
                p.value.type_name(),
                typed_param_type_name(want)
            )));
        }
        last = Some(name);
        i += 1;
    }
    if i < sorted.len() {
        return Err(RemoteError::new(
            codes::ARGUMENT_UNSUPPORTED,
            domains::NONE,
            "argument unsupported: %s",
            format!("parameter '{}' not supported", sorted[i].field),
        ));
    }
    Ok(())
}

/// `REMOTE_PROC_CONNECT_SET_IDENTITY`: a daemon that forwards its clients' storage calls
/// (virtqemud) names the client it acts for. qpoold checks the parameters as libvirt does
/// and logs the identity; access is decided by the socket, as without it. Accepted on
/// read-only connections too: virtqemud sends it on the read-only socket as well.
pub fn connect_set_identity(
    ctx: &Ctx<'_>,
    args: ConnectSetIdentityArgs,
) -> Result<(), RemoteError> {
    allow_flags(args.flags, 0, "virConnectSetIdentity")?;
    check_identity(&args.params.0)?;
    let identity: Vec<String> = args
        .params
        .0
        .iter()
        .map(|p| format!("{}={}", p.field, p.value))
        .collect();
    log::debug!(
        "connection {}: identity {}",
        ctx.conn.id(),
        if identity.is_empty() {
            "(none)".to_string()
        } else {
            identity.join(" ")
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::messages::TypedParamValue;

    fn param(field: &str, value: TypedParamValue) -> TypedParam {
        TypedParam {
            field: field.into(),
            value,
        }
    }

    /// The six parameters virtqemud 9.0 sends for a client (modular-libvirt.md).
    fn virtqemud_identity() -> Vec<TypedParam> {
        vec![
            param("user-name", TypedParamValue::String("root".into())),
            param("unix-user-id", TypedParamValue::ULLong(0)),
            param("group-name", TypedParamValue::String("root".into())),
            param("unix-group-id", TypedParamValue::ULLong(0)),
            param("process-id", TypedParamValue::LLong(4242)),
            param("process-time", TypedParamValue::ULLong(123_456)),
        ]
    }

    #[test]
    fn identity_of_virtqemud_and_an_empty_one_are_accepted() {
        assert_eq!(check_identity(&virtqemud_identity()), Ok(()));
        assert_eq!(check_identity(&[]), Ok(()));
    }

    #[test]
    fn identity_parameter_of_the_wrong_type_is_an_invalid_argument() {
        let mut params = virtqemud_identity();
        params[1] = param("unix-user-id", TypedParamValue::Int(0));
        let e = check_identity(&params).unwrap_err();
        assert_eq!((e.code, e.domain), (codes::INVALID_ARG, domains::NONE));
        assert_eq!(
            e.message,
            "invalid argument: invalid type 'int' for parameter 'unix-user-id', expected 'ullong'"
        );
    }

    #[test]
    fn identity_parameter_given_twice_is_an_invalid_argument() {
        let mut params = virtqemud_identity();
        params.push(param("user-name", TypedParamValue::String("other".into())));
        let e = check_identity(&params).unwrap_err();
        assert_eq!(
            e.message,
            "invalid argument: parameter 'user-name' occurs multiple times"
        );
    }

    #[test]
    fn identity_parameter_libvirt_does_not_know_is_unsupported() {
        let mut params = virtqemud_identity();
        params.push(param("zz-shoe-size", TypedParamValue::UInt(44)));
        let e = check_identity(&params).unwrap_err();
        assert_eq!(e.code, codes::ARGUMENT_UNSUPPORTED);
        assert_eq!(
            e.message,
            "argument unsupported: parameter 'zz-shoe-size' not supported"
        );
    }

    #[test]
    fn identity_field_name_of_80_bytes_is_too_big() {
        let e = check_identity(&[param(&"a".repeat(80), TypedParamValue::Int(1))]).unwrap_err();
        assert_eq!(e.code, codes::INTERNAL_ERROR);
        assert!(
            e.message.ends_with("too big for destination"),
            "{}",
            e.message
        );
    }
}
