//! The constants and shared shapes of libvirt's `remote_protocol.x` and public API that the
//! storage subset uses, named as libvirt names them.
//!
//! Owns: the numbers of the server's unsolicited messages, virErrorNumber and virErrorDomain
//! values, the API flag values ([`flags`]), the `remote_error` payload ([`RemoteError`]) and
//! the object handles ([`NonnullStoragePool`], [`NonnullStorageVol`]) with their XDR.
//! Must not: touch pools or volumes, or know which procedure does what (the procedure table
//! in `handlers` does).

use super::xdr::{Decoder, Encoder, Xdr, XdrError};

/// `REMOTE_PROC_*` numbers of the messages the server sends unasked (calls are numbered in
/// the procedure table, `handlers::PROCEDURES`).
pub mod procs {
    /// REMOTE_PROC_STORAGE_POOL_EVENT_LIFECYCLE.
    pub const STORAGE_POOL_EVENT_LIFECYCLE: i32 = 370;
    /// REMOTE_PROC_STORAGE_POOL_EVENT_REFRESH.
    pub const STORAGE_POOL_EVENT_REFRESH: i32 = 373;
}

/// virErrorNumber values qpoold sends, with libvirt's names (`VIR_ERR_*`).
#[allow(missing_docs)]
pub mod codes {
    pub const INTERNAL_ERROR: i32 = 1;
    pub const NO_SUPPORT: i32 = 3;
    pub const INVALID_ARG: i32 = 8;
    pub const OPERATION_FAILED: i32 = 9;
    pub const XML_ERROR: i32 = 27;
    pub const OPERATION_DENIED: i32 = 29;
    pub const XML_DETAIL: i32 = 35;
    pub const SYSTEM_ERROR: i32 = 38;
    pub const RPC: i32 = 39;
    pub const NO_STORAGE_POOL: i32 = 49;
    pub const NO_STORAGE_VOL: i32 = 50;
    pub const OPERATION_INVALID: i32 = 55;
    pub const CONFIG_UNSUPPORTED: i32 = 67;
    pub const ARGUMENT_UNSUPPORTED: i32 = 74;
    pub const STORAGE_VOL_EXIST: i32 = 90;
    pub const XML_INVALID_SCHEMA: i32 = 92;
    pub const INVALID_SECRET: i32 = 65;
    pub const NO_SECRET: i32 = 66;
}

/// virErrorDomain values qpoold sends, with libvirt's names (`VIR_FROM_*`).
#[allow(missing_docs)]
pub mod domains {
    pub const NONE: i32 = 0;
    pub const XML: i32 = 5;
    pub const RPC: i32 = 7;
    pub const STORAGE: i32 = 18;
    pub const SECRET: i32 = 30;
    pub const DOMAIN: i32 = 20;
}

/// virErrorLevel VIR_ERR_ERROR.
const ERR_ERROR: i32 = 2;

/// Flag values of libvirt's public API that the storage procedures take, with libvirt's
/// names (the `VIR_` prefix dropped).
#[allow(missing_docs)]
pub mod flags {
    /// virConnectFlags.
    pub const CONNECT_RO: u32 = 1;
    /// virStorageVolCreateFlags.
    pub const STORAGE_VOL_CREATE_PREALLOC_METADATA: u32 = 1;
    pub const STORAGE_VOL_CREATE_REFLINK: u32 = 2;
    pub const STORAGE_VOL_CREATE_VALIDATE: u32 = 4;
    /// virStorageVolResizeFlags.
    pub const STORAGE_VOL_RESIZE_ALLOCATE: u32 = 1;
    pub const STORAGE_VOL_RESIZE_DELTA: u32 = 2;
    pub const STORAGE_VOL_RESIZE_SHRINK: u32 = 4;
    /// virStorageVolUploadFlags / virStorageVolDownloadFlags.
    pub const STORAGE_VOL_UPLOAD_SPARSE_STREAM: u32 = 1;
    pub const STORAGE_VOL_DOWNLOAD_SPARSE_STREAM: u32 = 1;
    /// virStorageVolInfoFlags.
    pub const STORAGE_VOL_GET_PHYSICAL: u32 = 1;
    /// qpool's own flag, not libvirt's: on `virStorageVolDelete`, `virStorageVolWipe`,
    /// `virStorageVolWipePattern`, `virStorageVolResize` and `virStorageVolUpload`, go ahead
    /// even though another process holds the volume (a running QEMU, a copy), like
    /// `qpool --force`. libvirt has no such flag, so virsh cannot send it; libvirt's client
    /// library passes flags through unchecked, so libvirt-python can (`vol.delete(1 << 30)`).
    /// Bit 30 is far above every flag libvirt defines for these calls.
    pub const QPOOL_FORCE: u32 = 1 << 30;
    /// virStorageXMLFlags.
    pub const STORAGE_XML_INACTIVE: u32 = 1;
    /// virStoragePoolDefineFlags.
    pub const STORAGE_POOL_DEFINE_VALIDATE: u32 = 1;
    /// virStoragePoolCreateFlags.
    pub const STORAGE_POOL_CREATE_WITH_BUILD: u32 = 1;
    pub const STORAGE_POOL_CREATE_WITH_BUILD_OVERWRITE: u32 = 2;
    pub const STORAGE_POOL_CREATE_WITH_BUILD_NO_OVERWRITE: u32 = 4;
    /// virStoragePoolBuildFlags.
    pub const STORAGE_POOL_BUILD_REPAIR: u32 = 1;
    pub const STORAGE_POOL_BUILD_RESIZE: u32 = 2;
    pub const STORAGE_POOL_BUILD_NO_OVERWRITE: u32 = 4;
    pub const STORAGE_POOL_BUILD_OVERWRITE: u32 = 8;
    /// virConnectListAllStoragePoolsFlags.
    pub const CONNECT_LIST_STORAGE_POOLS_INACTIVE: u32 = 1;
    pub const CONNECT_LIST_STORAGE_POOLS_ACTIVE: u32 = 2;
    pub const CONNECT_LIST_STORAGE_POOLS_PERSISTENT: u32 = 4;
    pub const CONNECT_LIST_STORAGE_POOLS_TRANSIENT: u32 = 8;
    pub const CONNECT_LIST_STORAGE_POOLS_AUTOSTART: u32 = 16;
    pub const CONNECT_LIST_STORAGE_POOLS_NO_AUTOSTART: u32 = 32;
    pub const CONNECT_LIST_STORAGE_POOLS_DIR: u32 = 64;
    /// Every filter bit libvirt 9.0 knows (the pool types up to ISCSI_DIRECT, 1 << 19).
    pub const CONNECT_LIST_STORAGE_POOLS_FILTERS_ALL: u32 = (1 << 20) - 1;
    /// virDrvFeature values qpoold answers 1 to.
    pub const DRV_FEATURE_PROGRAM_KEEPALIVE: i32 = 10;
    pub const DRV_FEATURE_REMOTE_EVENT_CALLBACK: i32 = 14;
    pub const DRV_FEATURE_REMOTE_CLOSE_CALLBACK: i32 = 15;
    /// virStoragePoolEventID.
    pub const STORAGE_POOL_EVENT_ID_LIFECYCLE: i32 = 0;
    pub const STORAGE_POOL_EVENT_ID_REFRESH: i32 = 1;
    /// virStoragePoolState VIR_STORAGE_POOL_INACTIVE.
    pub const STORAGE_POOL_INACTIVE: u32 = 0;
    /// virStoragePoolState VIR_STORAGE_POOL_RUNNING.
    pub const STORAGE_POOL_RUNNING: u32 = 2;
    /// virConnectListAllSecretsFlags.
    pub const CONNECT_LIST_SECRETS_EPHEMERAL: u32 = 1;
    pub const CONNECT_LIST_SECRETS_NO_EPHEMERAL: u32 = 2;
    pub const CONNECT_LIST_SECRETS_PRIVATE: u32 = 4;
    pub const CONNECT_LIST_SECRETS_NO_PRIVATE: u32 = 8;
    /// virSecretDefineFlags.
    pub const SECRET_DEFINE_VALIDATE: u32 = 1;
    /// remote_auth_type REMOTE_AUTH_NONE.
    pub const AUTH_NONE: u32 = 0;
}

/// `remote_error`: what a failed call, or a failed stream, carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// virErrorNumber.
    pub code: i32,
    /// virErrorDomain.
    pub domain: i32,
    /// The full text the client shows.
    pub message: String,
    /// libvirt's generic format (`"Storage pool not found: %s"`).
    pub str1: Option<String>,
    /// The detail.
    pub str2: Option<String>,
    /// errno for system errors, -1 otherwise.
    pub int1: i32,
}

impl RemoteError {
    /// An error whose message is `format` with `%s` replaced by `detail`, as libvirt builds
    /// its messages.
    pub fn new(code: i32, domain: i32, format: &str, detail: impl Into<String>) -> RemoteError {
        let detail = detail.into();
        RemoteError {
            code,
            domain,
            message: format.replacen("%s", &detail, 1),
            str1: Some(format.to_string()),
            str2: Some(detail),
            int1: -1,
        }
    }

    /// A storage-domain error.
    pub fn storage(code: i32, format: &str, detail: impl Into<String>) -> RemoteError {
        Self::new(code, domains::STORAGE, format, detail)
    }

    /// libvirtd's answer to a procedure it does not implement; the client turns it into
    /// VIR_ERR_NO_SUPPORT and falls back where it can.
    pub fn unknown_procedure(proc_: i32) -> RemoteError {
        Self::new(
            codes::RPC,
            domains::RPC,
            "%s",
            format!("unknown procedure: {proc_}"),
        )
    }

    /// An unknown program or version.
    pub fn unknown_program(prog: u32, vers: u32) -> RemoteError {
        Self::new(
            codes::RPC,
            domains::RPC,
            "%s",
            format!("Cannot find program {prog} version {vers}"),
        )
    }

    /// libvirt's "internal error" of the RPC layer.
    pub fn internal(detail: impl Into<String>) -> RemoteError {
        Self::new(
            codes::INTERNAL_ERROR,
            domains::RPC,
            "internal error: %s",
            detail,
        )
    }

    /// A call before CONNECT_OPEN.
    pub fn not_open() -> RemoteError {
        Self::internal("hypervisor connection not open")
    }

    /// A storage-domain "invalid argument".
    pub fn invalid_arg(detail: impl Into<String>) -> RemoteError {
        Self::storage(codes::INVALID_ARG, "invalid argument: %s", detail)
    }

    /// A mutating call on a read-only connection.
    pub fn read_only(api: &str) -> RemoteError {
        Self::storage(
            codes::OPERATION_DENIED,
            "operation forbidden: %s",
            format!("read only access prevents {api}"),
        )
    }

    /// Flags the server does not support.
    pub fn unsupported_flags(flags: u32, function: &str) -> RemoteError {
        RemoteError {
            code: codes::INVALID_ARG,
            domain: domains::STORAGE,
            message: format!("unsupported flags ({flags:#x}) in function {function}"),
            str1: Some(function.to_string()),
            str2: Some("flags".to_string()),
            int1: 0,
        }
    }

    /// libvirt's API layer refusing a call the connection's driver does not implement.
    pub fn no_support(api: &str) -> RemoteError {
        Self::new(
            codes::NO_SUPPORT,
            domains::DOMAIN,
            "this function is not supported by the connection driver: %s",
            api,
        )
    }

    /// Refuses `flags` bits outside `allowed`, as libvirt's `virCheckFlags` does in
    /// `function`.
    pub fn check_flags(flags: u32, allowed: u32, function: &str) -> Result<(), RemoteError> {
        match flags & !allowed {
            0 => Ok(()),
            extra => Err(Self::unsupported_flags(extra, function)),
        }
    }

    /// A payload that did not decode.
    pub fn bad_payload(e: &XdrError) -> RemoteError {
        Self::new(
            codes::RPC,
            domains::RPC,
            "%s",
            format!("Unable to decode message payload: {e}"),
        )
    }

    /// Encodes the `remote_error` struct.
    pub fn encode(&self, e: &mut Encoder) {
        e.i32(self.code)
            .i32(self.domain)
            .opt_string(Some(&self.message))
            .i32(ERR_ERROR)
            .u32(0) // dom: NULL
            .opt_string(self.str1.as_deref())
            .opt_string(self.str2.as_deref())
            .opt_string(None)
            .i32(self.int1)
            .i32(if self.int1 == 0 { 0 } else { -1 })
            .u32(0); // net: NULL
    }
}

/// `remote_nonnull_storage_pool`: pools are resolved by UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonnullStoragePool {
    /// Pool name.
    pub name: String,
    /// Pool UUID.
    pub uuid: [u8; 16],
}

impl Xdr for NonnullStoragePool {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        Ok(NonnullStoragePool {
            name: d.string()?,
            uuid: d.uuid()?,
        })
    }
    fn encode(&self, e: &mut Encoder) {
        e.string(&self.name).fixed(&self.uuid);
    }
}

/// `remote_nonnull_storage_vol`: volumes are resolved by pool name and volume name; the key
/// of a dir-pool volume is its absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonnullStorageVol {
    /// Pool name.
    pub pool: String,
    /// Volume name.
    pub name: String,
    /// Volume key (the absolute path).
    pub key: String,
}

impl Xdr for NonnullStorageVol {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        Ok(NonnullStorageVol {
            pool: d.string()?,
            name: d.string()?,
            key: d.string()?,
        })
    }
    fn encode(&self, e: &mut Encoder) {
        e.string(&self.pool).string(&self.name).string(&self.key);
    }
}

/// `remote_nonnull_secret`: a secret by UUID, with its usage type and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonnullSecret {
    /// Secret UUID.
    pub uuid: [u8; 16],
    /// `virSecretUsageType` (0: none).
    pub usage_type: i32,
    /// The usage id ("" without a usage).
    pub usage_id: String,
}

impl Xdr for NonnullSecret {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        Ok(NonnullSecret {
            uuid: d.uuid()?,
            usage_type: d.i32()?,
            usage_id: d.string()?,
        })
    }
    fn encode(&self, e: &mut Encoder) {
        e.fixed(&self.uuid)
            .i32(self.usage_type)
            .string(&self.usage_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::words;

    #[test]
    fn unknown_procedure_error_matches_libvirtds_bytes() {
        // libvirt-rpc.md §7: the payload of the reply to procedure 9999.
        let mut e = Encoder::default();
        RemoteError::unknown_procedure(9999).encode(&mut e);
        let expected = words(
            "00000027 00000007 00000001 00000017 756e6b6e 6f776e20 70726f63 65647572 653a2039 \
             39393900 00000002 00000000 00000001 00000002 25730000 00000001 00000017 \
             756e6b6e 6f776e20 70726f63 65647572 653a2039 39393900 00000000 ffffffff \
             ffffffff 00000000",
        );
        assert_eq!(e.into_bytes(), expected);
    }

    #[test]
    fn pool_not_found_error_matches_libvirtds_bytes() {
        let mut e = Encoder::default();
        RemoteError::storage(
            codes::NO_STORAGE_POOL,
            "Storage pool not found: %s",
            "no storage pool with matching name 'nosuchpool'",
        )
        .encode(&mut e);
        let expected = words(
            "00000031 00000012 00000001 00000047 53746f72 61676520 706f6f6c 206e6f74 20666f75 \
             6e643a20 6e6f2073 746f7261 67652070 6f6f6c20 77697468 206d6174 6368696e \
             67206e61 6d652027 6e6f7375 6368706f 6f6c2700 00000002 00000000 00000001 \
             0000001a 53746f72 61676520 706f6f6c 206e6f74 20666f75 6e643a20 25730000 \
             00000001 0000002f 6e6f2073 746f7261 67652070 6f6f6c20 77697468 206d6174 \
             6368696e 67206e61 6d652027 6e6f7375 6368706f 6f6c2700 00000000 ffffffff \
             ffffffff 00000000",
        );
        assert_eq!(e.into_bytes(), expected);
    }

    #[test]
    fn pool_handle_vector_round_trips() {
        let bytes = words("00000002 6c760000 298b18be 8fe04134 80448b5e 03b856c4");
        let h = NonnullStoragePool::decode(&mut Decoder::new(&bytes)).unwrap();
        assert_eq!(h.name, "lv");
        let mut e = Encoder::default();
        h.encode(&mut e);
        assert_eq!(e.into_bytes(), bytes);
    }
}
