//! Procedure numbers, enums and error shapes of libvirt's `remote_protocol.x` that the
//! storage subset uses, named as libvirt names them.
//!
//! Owns: `REMOTE_PROC_*` numbers, flag values, the `remote_error` payload and the object
//! handles (`remote_nonnull_storage_pool`, `remote_nonnull_storage_vol`) with their XDR.
//! Must not: touch pools or volumes; `dispatch` connects these to the engine.

use super::xdr::{Decoder, Encoder, XdrError};

/// `REMOTE_PROC_*` numbers used by the storage subset.
#[allow(missing_docs)]
pub mod procs {
    pub const CONNECT_OPEN: i32 = 1;
    pub const CONNECT_CLOSE: i32 = 2;
    pub const CONNECT_GET_TYPE: i32 = 3;
    pub const CONNECT_GET_VERSION: i32 = 4;
    pub const CONNECT_GET_CAPABILITIES: i32 = 7;
    pub const CONNECT_GET_HOSTNAME: i32 = 59;
    pub const CONNECT_SUPPORTS_FEATURE: i32 = 60;
    pub const AUTH_LIST: i32 = 66;
    pub const CONNECT_NUM_OF_STORAGE_POOLS: i32 = 71;
    pub const CONNECT_LIST_STORAGE_POOLS: i32 = 72;
    pub const CONNECT_NUM_OF_DEFINED_STORAGE_POOLS: i32 = 73;
    pub const CONNECT_LIST_DEFINED_STORAGE_POOLS: i32 = 74;
    pub const CONNECT_FIND_STORAGE_POOL_SOURCES: i32 = 75;
    pub const STORAGE_POOL_CREATE_XML: i32 = 76;
    pub const STORAGE_POOL_DEFINE_XML: i32 = 77;
    pub const STORAGE_POOL_CREATE: i32 = 78;
    pub const STORAGE_POOL_BUILD: i32 = 79;
    pub const STORAGE_POOL_DESTROY: i32 = 80;
    pub const STORAGE_POOL_DELETE: i32 = 81;
    pub const STORAGE_POOL_UNDEFINE: i32 = 82;
    pub const STORAGE_POOL_REFRESH: i32 = 83;
    pub const STORAGE_POOL_LOOKUP_BY_NAME: i32 = 84;
    pub const STORAGE_POOL_LOOKUP_BY_UUID: i32 = 85;
    pub const STORAGE_POOL_LOOKUP_BY_VOLUME: i32 = 86;
    pub const STORAGE_POOL_GET_INFO: i32 = 87;
    pub const STORAGE_POOL_GET_XML_DESC: i32 = 88;
    pub const STORAGE_POOL_GET_AUTOSTART: i32 = 89;
    pub const STORAGE_POOL_SET_AUTOSTART: i32 = 90;
    pub const STORAGE_POOL_NUM_OF_VOLUMES: i32 = 91;
    pub const STORAGE_POOL_LIST_VOLUMES: i32 = 92;
    pub const STORAGE_VOL_CREATE_XML: i32 = 93;
    pub const STORAGE_VOL_DELETE: i32 = 94;
    pub const STORAGE_VOL_LOOKUP_BY_NAME: i32 = 95;
    pub const STORAGE_VOL_LOOKUP_BY_KEY: i32 = 96;
    pub const STORAGE_VOL_LOOKUP_BY_PATH: i32 = 97;
    pub const STORAGE_VOL_GET_INFO: i32 = 98;
    pub const STORAGE_VOL_GET_XML_DESC: i32 = 99;
    pub const STORAGE_VOL_GET_PATH: i32 = 100;
    pub const CONNECT_GET_URI: i32 = 110;
    pub const STORAGE_VOL_CREATE_XML_FROM: i32 = 125;
    pub const CONNECT_IS_SECURE: i32 = 149;
    pub const STORAGE_POOL_IS_ACTIVE: i32 = 154;
    pub const STORAGE_POOL_IS_PERSISTENT: i32 = 155;
    pub const CONNECT_GET_LIB_VERSION: i32 = 157;
    pub const STORAGE_VOL_WIPE: i32 = 165;
    pub const CONNECT_GET_SYSINFO: i32 = 203;
    pub const STORAGE_VOL_UPLOAD: i32 = 208;
    pub const STORAGE_VOL_DOWNLOAD: i32 = 209;
    pub const STORAGE_VOL_WIPE_PATTERN: i32 = 259;
    pub const STORAGE_VOL_RESIZE: i32 = 260;
    pub const CONNECT_LIST_ALL_STORAGE_POOLS: i32 = 281;
    pub const STORAGE_POOL_LIST_ALL_VOLUMES: i32 = 282;
    pub const CONNECT_REGISTER_CLOSE_CALLBACK: i32 = 360;
    pub const CONNECT_UNREGISTER_CLOSE_CALLBACK: i32 = 361;
    pub const CONNECT_STORAGE_POOL_EVENT_REGISTER_ANY: i32 = 368;
    pub const CONNECT_STORAGE_POOL_EVENT_DEREGISTER_ANY: i32 = 369;
    pub const STORAGE_POOL_EVENT_LIFECYCLE: i32 = 370;
    pub const STORAGE_POOL_EVENT_REFRESH: i32 = 373;
    pub const STORAGE_VOL_GET_INFO_FLAGS: i32 = 378;
    pub const STORAGE_POOL_LOOKUP_BY_TARGET_PATH: i32 = 391;
    pub const CONNECT_GET_STORAGE_POOL_CAPABILITIES: i32 = 403;
}

/// virErrorNumber values used by the storage subset.
#[allow(missing_docs)]
pub mod codes {
    pub const INTERNAL_ERROR: i32 = 1;
    pub const NO_SUPPORT: i32 = 3;
    pub const INVALID_ARG: i32 = 8;
    pub const OPERATION_FAILED: i32 = 9;
    pub const XML_ERROR: i32 = 27;
    pub const OPERATION_DENIED: i32 = 29;
    pub const SYSTEM_ERROR: i32 = 38;
    pub const RPC: i32 = 39;
    pub const NO_STORAGE_POOL: i32 = 49;
    pub const NO_STORAGE_VOL: i32 = 50;
    pub const OPERATION_INVALID: i32 = 55;
    pub const CONFIG_UNSUPPORTED: i32 = 67;
    pub const STORAGE_VOL_EXIST: i32 = 90;
}

/// virErrorDomain values used by the storage subset.
#[allow(missing_docs)]
pub mod domains {
    pub const RPC: i32 = 7;
    pub const STORAGE: i32 = 18;
    pub const DOMAIN: i32 = 20;
}

/// The libvirt API name behind each mutating procedure, for read-only refusals.
pub fn api_name(proc_: i32) -> Option<&'static str> {
    use procs::*;
    Some(match proc_ {
        CONNECT_FIND_STORAGE_POOL_SOURCES => "virConnectFindStoragePoolSources",
        STORAGE_POOL_CREATE_XML => "virStoragePoolCreateXML",
        STORAGE_POOL_DEFINE_XML => "virStoragePoolDefineXML",
        STORAGE_POOL_CREATE => "virStoragePoolCreate",
        STORAGE_POOL_BUILD => "virStoragePoolBuild",
        STORAGE_POOL_DESTROY => "virStoragePoolDestroy",
        STORAGE_POOL_DELETE => "virStoragePoolDelete",
        STORAGE_POOL_UNDEFINE => "virStoragePoolUndefine",
        STORAGE_POOL_REFRESH => "virStoragePoolRefresh",
        STORAGE_POOL_SET_AUTOSTART => "virStoragePoolSetAutostart",
        STORAGE_VOL_CREATE_XML => "virStorageVolCreateXML",
        STORAGE_VOL_CREATE_XML_FROM => "virStorageVolCreateXMLFrom",
        STORAGE_VOL_DELETE => "virStorageVolDelete",
        STORAGE_VOL_WIPE => "virStorageVolWipe",
        STORAGE_VOL_WIPE_PATTERN => "virStorageVolWipePattern",
        STORAGE_VOL_UPLOAD => "virStorageVolUpload",
        STORAGE_VOL_DOWNLOAD => "virStorageVolDownload",
        STORAGE_VOL_RESIZE => "virStorageVolResize",
        _ => return None,
    })
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
            .i32(2) // VIR_ERR_ERROR
            .u32(0) // dom: NULL
            .opt_string(self.str1.as_deref())
            .opt_string(self.str2.as_deref())
            .opt_string(None)
            .i32(self.int1)
            .i32(if self.int1 == 0 { 0 } else { -1 })
            .u32(0); // net: NULL
    }
}

/// `remote_nonnull_storage_pool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolHandle {
    /// Pool name.
    pub name: String,
    /// Pool UUID.
    pub uuid: [u8; 16],
}

impl PoolHandle {
    /// Decodes a handle.
    pub fn decode(d: &mut Decoder<'_>) -> Result<PoolHandle, XdrError> {
        Ok(PoolHandle {
            name: d.string()?,
            uuid: d.uuid()?,
        })
    }

    /// Encodes a handle.
    pub fn encode(&self, e: &mut Encoder) {
        e.string(&self.name).fixed(&self.uuid);
    }
}

/// `remote_nonnull_storage_vol`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolHandle {
    /// Pool name.
    pub pool: String,
    /// Volume name.
    pub name: String,
    /// Volume key (the absolute path).
    pub key: String,
}

impl VolHandle {
    /// Decodes a handle.
    pub fn decode(d: &mut Decoder<'_>) -> Result<VolHandle, XdrError> {
        Ok(VolHandle {
            pool: d.string()?,
            name: d.string()?,
            key: d.string()?,
        })
    }

    /// Encodes a handle.
    pub fn encode(&self, e: &mut Encoder) {
        e.string(&self.pool).string(&self.name).string(&self.key);
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
        let h = PoolHandle::decode(&mut Decoder::new(&bytes)).unwrap();
        assert_eq!(h.name, "lv");
        let mut e = Encoder::default();
        h.encode(&mut e);
        assert_eq!(e.into_bytes(), bytes);
    }
}
