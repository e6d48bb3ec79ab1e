//! The procedures qpoold serves: one table, one function per procedure.
//!
//! Owns: [`PROCEDURES`], the only place that says, for each `REMOTE_PROC_*` the storage subset
//! answers, its number, its name in `remote_protocol.x`, the libvirt API behind it (for
//! read-only refusals), whether it changes state (refused on a read-only connection),
//! whether it may come before `CONNECT_OPEN`, whether it is answered inline in the
//! connection's reader thread, and its handler; [`dispatch`], which applies those facts to
//! a call; and the [`Connection`] the handlers of connection-level procedures act on.
//! Handlers live in [`connect`], [`pools`], [`volumes`] and [`secrets`]; each takes its typed arguments
//! from `messages` and returns its typed reply.
//! Must not: read or write sockets (that is `server`), or implement engine or driver rules
//! (the registry does).

pub mod connect;
pub mod pools;
pub mod secrets;
pub mod volumes;

use super::errors;
use super::messages::{ConnectSupportsFeatureArgs, XmlRet};
use super::proto::{RemoteError, flags};
use super::xdr::{Decoder, Xdr, to_bytes};
use crate::pool::registry::{Registry, RegistryError};
use crate::pool::{Download, Upload};

/// What a connection-level procedure may change or ask about its connection.
pub trait Connection {
    /// The connection's number in the log (0 for one that has none).
    fn id(&self) -> u64 {
        0
    }
    /// Whether `CONNECT_OPEN` has been answered.
    fn is_open(&self) -> bool;
    /// Opens the connection; read-only when asked, or when the socket is read-only.
    fn open(&self, readonly: bool);
    /// Closes it (`CONNECT_CLOSE`).
    fn close(&self);
    /// Whether it may only query.
    fn is_readonly(&self) -> bool;
    /// The client asked about keepalive: the server may ping it from now on.
    fn enable_keepalive(&self);
    /// Registers for storage pool events of `event_id`, of one pool or all; returns the
    /// callback ID.
    fn register_pool_events(&self, event_id: i32, pool: Option<[u8; 16]>) -> i32;
    /// Removes a registration of this connection; false when there was none.
    fn deregister_pool_events(&self, callback_id: i32) -> bool;
}

/// What a handler works with.
pub struct Ctx<'a> {
    /// The daemon's pools.
    pub registry: &'a Registry,
    /// The calling connection.
    pub conn: &'a dyn Connection,
}

/// What a call produced.
#[derive(Debug)]
pub enum Outcome {
    /// A reply payload.
    Reply(Vec<u8>),
    /// An upload stream: reply OK, then write the client's packets here.
    Upload {
        /// Where the bytes go.
        upload: Upload,
        /// The volume's name, for errors.
        name: String,
    },
    /// A download stream: reply OK, then send these bytes.
    Download {
        /// The bytes (holes only when the download is sparse).
        download: Download,
    },
}

/// What a handler may return: a typed reply, or a stream.
pub trait IntoOutcome {
    /// The outcome to send.
    fn into_outcome(self) -> Outcome;
}

impl<T: Xdr> IntoOutcome for T {
    fn into_outcome(self) -> Outcome {
        Outcome::Reply(to_bytes(&self))
    }
}

impl IntoOutcome for Outcome {
    fn into_outcome(self) -> Outcome {
        self
    }
}

/// A handler after its arguments' type is erased: payload in, outcome out.
pub type Handler = fn(&Ctx<'_>, &[u8]) -> Result<Outcome, RemoteError>;

/// Decodes `payload` as `A` (all of it), runs `f`, encodes its reply.
pub fn typed<A: Xdr, R: IntoOutcome>(
    ctx: &Ctx<'_>,
    payload: &[u8],
    f: fn(&Ctx<'_>, A) -> Result<R, RemoteError>,
) -> Result<Outcome, RemoteError> {
    let mut d = Decoder::new(payload);
    let args = A::decode(&mut d).map_err(|e| RemoteError::bad_payload(&e))?;
    f(ctx, args).map(IntoOutcome::into_outcome)
}

/// Decodes `payload` as the arguments `f` takes, and nothing else.
pub fn decode_args<A: Xdr, R>(
    payload: &[u8],
    _f: fn(&Ctx<'_>, A) -> Result<R, RemoteError>,
) -> Result<(), super::xdr::XdrError> {
    A::decode(&mut Decoder::new(payload)).map(|_| ())
}

/// Whether a procedure changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Allowed on read-only connections.
    Query,
    /// Refused on read-only connections ("read only access prevents …").
    Change,
}

/// Where a procedure runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    /// In the connection's reader thread: connection state, and one-object queries cheaper
    /// than a thread hand-off (one `stat` and a header read at most).
    Inline,
    /// In a worker thread of its own: anything that can take long (creates, copies, wipes,
    /// resizes, streams, pool listings and refreshes).
    Worker,
}

/// The facts of one procedure.
#[derive(Debug, Clone, Copy)]
pub struct Procedure {
    /// `REMOTE_PROC_*` number.
    pub number: i32,
    /// `REMOTE_PROC_*` name without the prefix.
    pub name: &'static str,
    /// The libvirt API the procedure serves.
    pub api: &'static str,
    /// Whether it changes state.
    pub access: Access,
    /// Whether it is answered before `CONNECT_OPEN`.
    pub before_open: bool,
    /// Where it runs.
    pub runs: Runs,
    /// The handler.
    pub handler: Handler,
    /// Decodes the arguments alone, as the handler would before running (for fuzzing the
    /// XDR of every procedure without touching any pool).
    pub decode: fn(&[u8]) -> Result<(), super::xdr::XdrError>,
}

/// One row of [`PROCEDURES`]: `number, NAME, "virApi", Query|Change, Inline|Worker, handler`,
/// optionally `, before_open`.
macro_rules! procedure {
    ($number:literal, $name:ident, $api:literal, $access:ident, $runs:ident, $f:path $(, $before:ident)?) => {
        Procedure {
            number: $number,
            name: stringify!($name),
            api: $api,
            access: Access::$access,
            before_open: procedure!(@before $($before)?),
            runs: Runs::$runs,
            handler: |ctx, payload| typed(ctx, payload, $f),
            decode: |payload| decode_args(payload, $f),
        }
    };
    (@before before_open) => { true };
    (@before) => { false };
}

/// Every procedure qpoold answers; anything else gets libvirt's "unknown procedure".
#[rustfmt::skip]
pub static PROCEDURES: &[Procedure] = &[
    procedure!(1, CONNECT_OPEN, "virConnectOpen", Query, Inline, connect::connect_open, before_open),
    procedure!(2, CONNECT_CLOSE, "virConnectClose", Query, Inline, connect::connect_close, before_open),
    procedure!(3, CONNECT_GET_TYPE, "virConnectGetType", Query, Inline, connect::connect_get_type),
    procedure!(4, CONNECT_GET_VERSION, "virConnectGetVersion", Query, Inline, connect::connect_get_version),
    procedure!(6, NODE_GET_INFO, "virNodeGetInfo", Query, Inline, connect::node_get_info),
    procedure!(7, CONNECT_GET_CAPABILITIES, "virConnectGetCapabilities", Query, Inline, connect::connect_get_capabilities),
    procedure!(59, CONNECT_GET_HOSTNAME, "virConnectGetHostname", Query, Inline, connect::connect_get_hostname),
    procedure!(60, CONNECT_SUPPORTS_FEATURE, "virConnectSupportsFeature", Query, Inline, connect::connect_supports_feature, before_open),
    procedure!(66, AUTH_LIST, "virConnectAuthList", Query, Inline, connect::auth_list, before_open),
    procedure!(71, CONNECT_NUM_OF_STORAGE_POOLS, "virConnectNumOfStoragePools", Query, Worker, pools::connect_num_of_storage_pools),
    procedure!(72, CONNECT_LIST_STORAGE_POOLS, "virConnectListStoragePools", Query, Worker, pools::connect_list_storage_pools),
    procedure!(73, CONNECT_NUM_OF_DEFINED_STORAGE_POOLS, "virConnectNumOfDefinedStoragePools", Query, Worker, pools::connect_num_of_defined_storage_pools),
    procedure!(74, CONNECT_LIST_DEFINED_STORAGE_POOLS, "virConnectListDefinedStoragePools", Query, Worker, pools::connect_list_defined_storage_pools),
    procedure!(75, CONNECT_FIND_STORAGE_POOL_SOURCES, "virConnectFindStoragePoolSources", Change, Worker, connect::connect_find_storage_pool_sources),
    procedure!(76, STORAGE_POOL_CREATE_XML, "virStoragePoolCreateXML", Change, Worker, pools::storage_pool_create_xml),
    procedure!(77, STORAGE_POOL_DEFINE_XML, "virStoragePoolDefineXML", Change, Worker, pools::storage_pool_define_xml),
    procedure!(78, STORAGE_POOL_CREATE, "virStoragePoolCreate", Change, Worker, pools::storage_pool_create),
    procedure!(79, STORAGE_POOL_BUILD, "virStoragePoolBuild", Change, Worker, pools::storage_pool_build),
    procedure!(80, STORAGE_POOL_DESTROY, "virStoragePoolDestroy", Change, Worker, pools::storage_pool_destroy),
    procedure!(81, STORAGE_POOL_DELETE, "virStoragePoolDelete", Change, Worker, pools::storage_pool_delete),
    procedure!(82, STORAGE_POOL_UNDEFINE, "virStoragePoolUndefine", Change, Worker, pools::storage_pool_undefine),
    procedure!(83, STORAGE_POOL_REFRESH, "virStoragePoolRefresh", Change, Worker, pools::storage_pool_refresh),
    procedure!(84, STORAGE_POOL_LOOKUP_BY_NAME, "virStoragePoolLookupByName", Query, Inline, pools::storage_pool_lookup_by_name),
    procedure!(85, STORAGE_POOL_LOOKUP_BY_UUID, "virStoragePoolLookupByUUID", Query, Inline, pools::storage_pool_lookup_by_uuid),
    procedure!(86, STORAGE_POOL_LOOKUP_BY_VOLUME, "virStoragePoolLookupByVolume", Query, Inline, pools::storage_pool_lookup_by_volume),
    procedure!(87, STORAGE_POOL_GET_INFO, "virStoragePoolGetInfo", Query, Inline, pools::storage_pool_get_info),
    procedure!(88, STORAGE_POOL_GET_XML_DESC, "virStoragePoolGetXMLDesc", Query, Worker, pools::storage_pool_get_xml_desc),
    procedure!(89, STORAGE_POOL_GET_AUTOSTART, "virStoragePoolGetAutostart", Query, Inline, pools::storage_pool_get_autostart),
    procedure!(90, STORAGE_POOL_SET_AUTOSTART, "virStoragePoolSetAutostart", Change, Worker, pools::storage_pool_set_autostart),
    procedure!(91, STORAGE_POOL_NUM_OF_VOLUMES, "virStoragePoolNumOfVolumes", Query, Worker, volumes::storage_pool_num_of_volumes),
    procedure!(92, STORAGE_POOL_LIST_VOLUMES, "virStoragePoolListVolumes", Query, Worker, volumes::storage_pool_list_volumes),
    procedure!(93, STORAGE_VOL_CREATE_XML, "virStorageVolCreateXML", Change, Worker, volumes::storage_vol_create_xml),
    procedure!(94, STORAGE_VOL_DELETE, "virStorageVolDelete", Change, Worker, volumes::storage_vol_delete),
    procedure!(95, STORAGE_VOL_LOOKUP_BY_NAME, "virStorageVolLookupByName", Query, Inline, volumes::storage_vol_lookup_by_name),
    procedure!(96, STORAGE_VOL_LOOKUP_BY_KEY, "virStorageVolLookupByKey", Query, Worker, volumes::storage_vol_lookup_by_key),
    procedure!(97, STORAGE_VOL_LOOKUP_BY_PATH, "virStorageVolLookupByPath", Query, Worker, volumes::storage_vol_lookup_by_path),
    procedure!(98, STORAGE_VOL_GET_INFO, "virStorageVolGetInfo", Query, Inline, volumes::storage_vol_get_info),
    procedure!(99, STORAGE_VOL_GET_XML_DESC, "virStorageVolGetXMLDesc", Query, Worker, volumes::storage_vol_get_xml_desc),
    procedure!(100, STORAGE_VOL_GET_PATH, "virStorageVolGetPath", Query, Inline, volumes::storage_vol_get_path),
    procedure!(110, CONNECT_GET_URI, "virConnectGetURI", Query, Inline, connect::connect_get_uri),
    procedure!(125, STORAGE_VOL_CREATE_XML_FROM, "virStorageVolCreateXMLFrom", Change, Worker, volumes::storage_vol_create_xml_from),
    procedure!(139, CONNECT_NUM_OF_SECRETS, "virConnectNumOfSecrets", Query, Inline, secrets::connect_num_of_secrets),
    procedure!(140, CONNECT_LIST_SECRETS, "virConnectListSecrets", Query, Inline, secrets::connect_list_secrets),
    procedure!(141, SECRET_LOOKUP_BY_UUID, "virSecretLookupByUUID", Query, Inline, secrets::secret_lookup_by_uuid),
    procedure!(142, SECRET_DEFINE_XML, "virSecretDefineXML", Change, Worker, secrets::secret_define_xml),
    procedure!(143, SECRET_GET_XML_DESC, "virSecretGetXMLDesc", Query, Inline, secrets::secret_get_xml_desc),
    procedure!(144, SECRET_SET_VALUE, "virSecretSetValue", Change, Worker, secrets::secret_set_value),
    procedure!(145, SECRET_GET_VALUE, "virSecretGetValue", Change, Inline, secrets::secret_get_value),
    procedure!(146, SECRET_UNDEFINE, "virSecretUndefine", Change, Worker, secrets::secret_undefine),
    procedure!(147, SECRET_LOOKUP_BY_USAGE, "virSecretLookupByUsage", Query, Inline, secrets::secret_lookup_by_usage),
    procedure!(149, CONNECT_IS_SECURE, "virConnectIsSecure", Query, Inline, connect::connect_is_secure),
    procedure!(154, STORAGE_POOL_IS_ACTIVE, "virStoragePoolIsActive", Query, Inline, pools::storage_pool_is_active),
    procedure!(155, STORAGE_POOL_IS_PERSISTENT, "virStoragePoolIsPersistent", Query, Inline, pools::storage_pool_is_persistent),
    procedure!(157, CONNECT_GET_LIB_VERSION, "virConnectGetLibVersion", Query, Inline, connect::connect_get_lib_version),
    procedure!(165, STORAGE_VOL_WIPE, "virStorageVolWipe", Change, Worker, volumes::storage_vol_wipe),
    procedure!(203, CONNECT_GET_SYSINFO, "virConnectGetSysinfo", Query, Inline, connect::connect_get_sysinfo),
    procedure!(208, STORAGE_VOL_UPLOAD, "virStorageVolUpload", Change, Worker, volumes::storage_vol_upload),
    procedure!(209, STORAGE_VOL_DOWNLOAD, "virStorageVolDownload", Change, Worker, volumes::storage_vol_download),
    procedure!(259, STORAGE_VOL_WIPE_PATTERN, "virStorageVolWipePattern", Change, Worker, volumes::storage_vol_wipe_pattern),
    procedure!(260, STORAGE_VOL_RESIZE, "virStorageVolResize", Change, Worker, volumes::storage_vol_resize),
    procedure!(273, CONNECT_LIST_ALL_DOMAINS, "virConnectListAllDomains", Query, Inline, connect::connect_list_all_domains),
    procedure!(281, CONNECT_LIST_ALL_STORAGE_POOLS, "virConnectListAllStoragePools", Query, Worker, pools::connect_list_all_storage_pools),
    procedure!(282, STORAGE_POOL_LIST_ALL_VOLUMES, "virStoragePoolListAllVolumes", Query, Worker, volumes::storage_pool_list_all_volumes),
    procedure!(287, CONNECT_LIST_ALL_SECRETS, "virConnectListAllSecrets", Query, Inline, secrets::connect_list_all_secrets),
    procedure!(360, CONNECT_REGISTER_CLOSE_CALLBACK, "virConnectRegisterCloseCallback", Query, Inline, connect::connect_register_close_callback),
    procedure!(361, CONNECT_UNREGISTER_CLOSE_CALLBACK, "virConnectUnregisterCloseCallback", Query, Inline, connect::connect_unregister_close_callback),
    procedure!(368, CONNECT_STORAGE_POOL_EVENT_REGISTER_ANY, "virConnectStoragePoolEventRegisterAny", Query, Inline, connect::connect_storage_pool_event_register_any),
    procedure!(369, CONNECT_STORAGE_POOL_EVENT_DEREGISTER_ANY, "virConnectStoragePoolEventDeregisterAny", Query, Inline, connect::connect_storage_pool_event_deregister_any),
    procedure!(378, STORAGE_VOL_GET_INFO_FLAGS, "virStorageVolGetInfoFlags", Query, Inline, volumes::storage_vol_get_info_flags),
    procedure!(391, STORAGE_POOL_LOOKUP_BY_TARGET_PATH, "virStoragePoolLookupByTargetPath", Query, Worker, pools::storage_pool_lookup_by_target_path),
    procedure!(403, CONNECT_GET_STORAGE_POOL_CAPABILITIES, "virConnectGetStoragePoolCapabilities", Query, Inline, connect::connect_get_storage_pool_capabilities),
    procedure!(419, CONNECT_SET_IDENTITY, "virConnectSetIdentity", Query, Inline, connect::connect_set_identity),
];

/// The facts of procedure `number`, if qpoold answers it.
pub fn procedure(number: i32) -> Option<&'static Procedure> {
    PROCEDURES.iter().find(|p| p.number == number)
}

/// Runs a call whose procedure is known: refuses it before open or on a read-only
/// connection as libvirt does, then runs its handler.
pub fn dispatch(ctx: &Ctx<'_>, proc_: &Procedure, payload: &[u8]) -> Result<Outcome, RemoteError> {
    if !proc_.before_open && !ctx.conn.is_open() {
        return Err(RemoteError::not_open());
    }
    if proc_.access == Access::Change && ctx.conn.is_readonly() {
        return Err(RemoteError::read_only(proc_.api));
    }
    (proc_.handler)(ctx, payload)
}

/// Refuses `flags` bits outside `allowed`, as libvirt's `virCheckFlags` in `function` does.
fn allow_flags(flags: u32, allowed: u32, function: &str) -> Result<(), RemoteError> {
    RemoteError::check_flags(flags, allowed, function)
}

/// A registry failure as libvirt's error.
fn driver(e: RegistryError) -> RemoteError {
    errors::registry(&e)
}

/// An engine failure as libvirt's error.
fn engine(e: crate::Error) -> RemoteError {
    errors::engine(&e)
}

/// An XML reply.
fn xml(xml: String) -> XmlRet {
    XmlRet { xml }
}

/// Whether a feature may be asked before open (only PROGRAM_KEEPALIVE may).
fn feature_before_open(args: &ConnectSupportsFeatureArgs) -> bool {
    args.feature == flags::DRV_FEATURE_PROGRAM_KEEPALIVE
}

#[cfg(test)]
mod tests;
