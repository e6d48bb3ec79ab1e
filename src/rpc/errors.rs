//! How engine and driver failures read on the wire: libvirt's error for each [`ErrorKind`].
//!
//! Owns: the one table from [`ErrorKind`] to libvirt's virErrorNumber and message format
//! ([`KINDS`]), the few details libvirt words differently from the engine's message (a missing
//! volume, an existing volume, a refused resize), the errno of system errors, and the secret
//! driver's codes and words for the secret store's failures ([`secret`]).
//! Must not: decide whether something fails; it only translates failures.

use super::proto::{RemoteError, codes, domains};
use crate::error::{ErrorKind, errno, one_line};
use crate::pool::SecretStoreError;
use crate::pool::registry::RegistryError;

/// libvirt's error code, error domain and message format for each kind of failure.
pub const KINDS: &[(ErrorKind, i32, i32, &str)] = &[
    (
        ErrorKind::InvalidXml,
        codes::XML_ERROR,
        domains::STORAGE,
        "XML error: %s",
    ),
    (
        ErrorKind::MalformedXml,
        codes::XML_DETAIL,
        domains::STORAGE,
        "%s",
    ),
    (
        ErrorKind::InvalidSchema,
        codes::XML_INVALID_SCHEMA,
        domains::XML,
        "XML document failed to validate against schema: %s",
    ),
    (
        ErrorKind::InvalidArg,
        codes::INVALID_ARG,
        domains::STORAGE,
        "invalid argument: %s",
    ),
    (
        ErrorKind::NoPool,
        codes::NO_STORAGE_POOL,
        domains::STORAGE,
        "Storage pool not found: %s",
    ),
    (
        ErrorKind::NoVolume,
        codes::NO_STORAGE_VOL,
        domains::STORAGE,
        "Storage volume not found: %s",
    ),
    (
        ErrorKind::VolumeExists,
        codes::STORAGE_VOL_EXIST,
        domains::STORAGE,
        "storage volume %s exists already",
    ),
    (
        ErrorKind::BadName,
        codes::OPERATION_INVALID,
        domains::STORAGE,
        "Requested operation is not valid: %s",
    ),
    (
        ErrorKind::Unsupported,
        codes::CONFIG_UNSUPPORTED,
        domains::STORAGE,
        "unsupported configuration: %s",
    ),
    (
        ErrorKind::NoSupport,
        codes::NO_SUPPORT,
        domains::STORAGE,
        "this function is not supported by the connection driver: %s",
    ),
    (
        ErrorKind::InvalidState,
        codes::OPERATION_INVALID,
        domains::STORAGE,
        "Requested operation is not valid: %s",
    ),
    (
        ErrorKind::Conflict,
        codes::OPERATION_FAILED,
        domains::STORAGE,
        "operation failed: %s",
    ),
    (
        ErrorKind::NotEnoughSpace,
        codes::OPERATION_FAILED,
        domains::STORAGE,
        "operation failed: %s",
    ),
    (
        ErrorKind::Internal,
        codes::INTERNAL_ERROR,
        domains::STORAGE,
        "internal error: %s",
    ),
    (
        ErrorKind::NoSpace,
        codes::SYSTEM_ERROR,
        domains::STORAGE,
        "%s",
    ),
    (ErrorKind::Io, codes::SYSTEM_ERROR, domains::STORAGE, "%s"),
];

/// libvirt's error for a failure of `kind` with `detail`; system errors carry `errno`.
fn by_kind(kind: ErrorKind, detail: String, errno: Option<i32>) -> RemoteError {
    let (code, domain, format) = KINDS
        .iter()
        .find(|(k, ..)| *k == kind)
        .map_or((codes::SYSTEM_ERROR, domains::STORAGE, "%s"), |row| {
            (row.1, row.2, row.3)
        });
    let mut err = RemoteError::new(code, domain, format, detail);
    if code == codes::SYSTEM_ERROR {
        err.int1 = errno.unwrap_or(-1);
    }
    err
}

/// libvirt's detail for a missing volume, by what it was looked up with.
pub fn no_volume(what: &str, value: &str) -> RemoteError {
    let detail = if what == "key" {
        format!("no storage vol with matching key {value}")
    } else {
        format!("no storage vol with matching {what} '{value}'")
    };
    by_kind(ErrorKind::NoVolume, detail, None)
}

/// libvirt's error for an engine failure.
pub fn engine(e: &crate::Error) -> RemoteError {
    match e {
        crate::Error::VolumeExists { name, .. } => {
            by_kind(ErrorKind::VolumeExists, format!("'{name}'"), None)
        }
        crate::Error::NoVolume { name, .. } => no_volume("name", name),
        // The secret an encrypted create names is missing or has no value: libvirt's
        // secret lookup error, with the volume named.
        crate::Error::Secret {
            source: crate::error::SecretError::NotFound(_) | crate::error::SecretError::NoValue(_),
            ..
        } => RemoteError::new(
            codes::NO_SECRET,
            domains::SECRET,
            "Secret not found: %s",
            one_line(e),
        ),
        // The reason alone, as libvirt words it.
        crate::Error::InvalidResize { refusal, .. } => {
            by_kind(refusal.kind(), refusal.to_string(), None)
        }
        // As libvirt's validator words it: the schema, then the reason on a line of its own.
        crate::Error::Xml(x @ crate::xml::Error::NotInSchema { .. }) => {
            by_kind(ErrorKind::InvalidSchema, x.to_string(), None)
        }
        _ => by_kind(e.kind(), one_line(e), errno(e)),
    }
}

/// libvirt's error for a failure of qpoold's secret store, in the secret driver's codes and
/// words.
pub fn secret(e: &SecretStoreError) -> RemoteError {
    use SecretStoreError as S;
    let (code, format) = match e {
        S::NoUuid(_) | S::NoUsage(_) | S::NoValue(_) => (codes::NO_SECRET, "Secret not found: %s"),
        S::Private => (codes::INVALID_SECRET, "Invalid secret: %s"),
        S::Xml(_) => (codes::XML_ERROR, "XML error: %s"),
        S::ValueTooLarge(_) => (codes::INVALID_ARG, "invalid argument: %s"),
        S::UsageTaken { .. } | S::UsageChanged { .. } | S::PrivateFlag => {
            (codes::INTERNAL_ERROR, "internal error: %s")
        }
        S::Io { .. } => (codes::SYSTEM_ERROR, "%s"),
    };
    let mut err = RemoteError::new(code, domains::SECRET, format, one_line(e));
    if let S::Io { source, .. } = e {
        err.int1 = source.raw_os_error().unwrap_or(-1);
    }
    err
}

/// The answer to a secret call when the daemon keeps no secrets.
pub fn no_secret_driver() -> RemoteError {
    RemoteError::new(
        codes::NO_SUPPORT,
        domains::SECRET,
        "this function is not supported by the connection driver: %s",
        "no secret driver",
    )
}

/// libvirt's error for a driver failure.
pub fn registry(e: &RegistryError) -> RemoteError {
    match e {
        RegistryError::Engine(e) => engine(e),
        // virCheckFlags' own shape, as the build flags of a dir pool are refused.
        RegistryError::UnsupportedBuildFlags { flags } => {
            RemoteError::unsupported_flags(*flags, "virStorageBackendFileSystemBuild")
        }
        RegistryError::Xml(x @ crate::xml::Error::NotInSchema { .. }) => {
            by_kind(ErrorKind::InvalidSchema, x.to_string(), None)
        }
        _ => by_kind(e.kind(), one_line(e), errno(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ResizeRefusal;
    use crate::rpc::proto::domains;

    fn io(errno: i32) -> std::io::Error {
        std::io::Error::from_raw_os_error(errno)
    }

    fn code_of(kind: ErrorKind) -> i32 {
        KINDS.iter().find(|(k, ..)| *k == kind).unwrap().1
    }

    #[test]
    fn every_kind_has_one_row() {
        let kinds = [
            ErrorKind::InvalidXml,
            ErrorKind::InvalidArg,
            ErrorKind::NoPool,
            ErrorKind::NoVolume,
            ErrorKind::VolumeExists,
            ErrorKind::Unsupported,
            ErrorKind::InvalidState,
            ErrorKind::Conflict,
            ErrorKind::NoSpace,
            ErrorKind::Io,
            ErrorKind::MalformedXml,
            ErrorKind::InvalidSchema,
            ErrorKind::BadName,
            ErrorKind::NoSupport,
            ErrorKind::Internal,
            ErrorKind::NotEnoughSpace,
        ];
        for kind in kinds {
            assert_eq!(
                KINDS.iter().filter(|(k, ..)| *k == kind).count(),
                1,
                "{kind:?}"
            );
        }
        assert_eq!(KINDS.len(), kinds.len());
    }

    #[test]
    fn invalid_xml_is_xml_error() {
        let e: crate::Error = crate::xml::VolumeDef::parse("<volume/>")
            .unwrap_err()
            .into();
        let r = engine(&e);
        assert_eq!((r.code, r.domain), (codes::XML_ERROR, domains::STORAGE));
        assert!(
            r.message.starts_with("XML error: invalid volume XML"),
            "{}",
            r.message
        );
        assert_eq!(code_of(ErrorKind::InvalidXml), codes::XML_ERROR);
    }

    #[test]
    fn invalid_arg_keeps_libvirts_resize_wording() {
        let e = crate::Error::InvalidResize {
            name: "v".into(),
            refusal: ResizeRefusal::ShrinkWithoutFlag,
        };
        let r = engine(&e);
        assert_eq!(r.code, codes::INVALID_ARG);
        assert_eq!(
            r.message,
            "invalid argument: Can't shrink capacity below current capacity unless shrink flag explicitly specified"
        );
    }

    #[test]
    fn no_pool_is_no_storage_pool() {
        let r = registry(&RegistryError::NoPool {
            what: "name",
            value: "x".into(),
        });
        assert_eq!(r.code, codes::NO_STORAGE_POOL);
        assert_eq!(
            r.message,
            "Storage pool not found: no storage pool with matching name 'x'"
        );
    }

    #[test]
    fn no_volume_uses_libvirts_detail() {
        let r = engine(&crate::Error::NoVolume {
            name: "v".into(),
            pool: "p".into(),
        });
        assert_eq!(r.code, codes::NO_STORAGE_VOL);
        assert_eq!(
            r.message,
            "Storage volume not found: no storage vol with matching name 'v'"
        );
        assert_eq!(
            no_volume("key", "/p/v").str2.as_deref(),
            Some("no storage vol with matching key /p/v")
        );
    }

    #[test]
    fn volume_exists_quotes_the_name() {
        let r = engine(&crate::Error::VolumeExists {
            name: "v".into(),
            pool: "p".into(),
        });
        assert_eq!(r.code, codes::STORAGE_VOL_EXIST);
        assert_eq!(r.message, "storage volume 'v' exists already");
    }

    #[test]
    fn unsupported_is_config_unsupported() {
        let e =
            crate::xml::PoolDef::parse("<pool type='logical'><name>x</name></pool>").unwrap_err();
        let r = registry(&RegistryError::Xml(e));
        assert_eq!(r.code, codes::CONFIG_UNSUPPORTED);
        assert!(r.message.starts_with("unsupported configuration: "));
    }

    #[test]
    fn malformed_xml_is_xml_detail() {
        let e: crate::Error = crate::xml::VolumeDef::parse("<volume>").unwrap_err().into();
        let r = engine(&e);
        assert_eq!((r.code, r.domain), (codes::XML_DETAIL, domains::STORAGE));
        assert_eq!(code_of(ErrorKind::MalformedXml), codes::XML_DETAIL);
    }

    #[test]
    fn invalid_schema_is_xml_invalid_schema_in_the_xml_domain() {
        let e = crate::xml::pool::check_known_elements(
            "<pool type='dir'><name>p</name><bogus/><target><path>/p</path></target></pool>",
        )
        .unwrap_err();
        let r = registry(&RegistryError::Xml(e));
        assert_eq!(
            (r.code, r.domain),
            (codes::XML_INVALID_SCHEMA, domains::XML)
        );
        assert!(
            r.message
                .starts_with("XML document failed to validate against schema: "),
            "{}",
            r.message
        );
    }

    #[test]
    fn bad_name_is_operation_invalid() {
        let r = engine(&crate::Error::InvalidName {
            name: "a/b".into(),
            reason: "the name contains '/'",
        });
        assert_eq!(r.code, codes::OPERATION_INVALID);
        assert_eq!(code_of(ErrorKind::BadName), codes::OPERATION_INVALID);
    }

    #[test]
    fn no_support_is_no_support() {
        let r = registry(&RegistryError::NoSourceDiscovery {
            pool_type: "dir".into(),
        });
        assert_eq!((r.code, r.domain), (codes::NO_SUPPORT, domains::STORAGE));
        assert_eq!(
            r.message,
            "this function is not supported by the connection driver: pool type 'dir' does not support source discovery"
        );
    }

    #[test]
    fn internal_is_internal_error() {
        let r = registry(&RegistryError::NameInUse { name: "v".into() });
        assert_eq!(r.code, codes::INTERNAL_ERROR);
        assert_eq!(
            r.message,
            "internal error: storage volume name 'v' already in use."
        );
    }

    #[test]
    fn not_enough_space_is_operation_failed_in_libvirts_words() {
        let r = engine(&crate::Error::InvalidResize {
            name: "v".into(),
            refusal: ResizeRefusal::NotEnoughSpace,
        });
        assert_eq!(r.code, codes::OPERATION_FAILED);
        assert_eq!(
            r.message,
            "operation failed: Not enough space left in storage pool"
        );
    }

    #[test]
    fn dir_build_flags_are_refused_as_vir_check_flags_refuses_them() {
        let r = registry(&RegistryError::UnsupportedBuildFlags { flags: 1 });
        assert_eq!((r.code, r.int1), (codes::INVALID_ARG, 0));
        assert_eq!(
            r.message,
            "unsupported flags (0x1) in function virStorageBackendFileSystemBuild"
        );
    }

    #[test]
    fn invalid_state_is_operation_invalid() {
        let r = registry(&RegistryError::StillBuilding { name: "v".into() });
        assert_eq!(r.code, codes::OPERATION_INVALID);
        assert_eq!(
            r.message,
            "Requested operation is not valid: volume 'v' is still being allocated."
        );
    }

    #[test]
    fn conflict_is_operation_failed() {
        let r = registry(&RegistryError::TargetTaken { other: "a".into() });
        assert_eq!(r.code, codes::OPERATION_FAILED);
        assert_eq!(
            r.message,
            "operation failed: Storage source conflict with pool: 'a'"
        );
    }

    #[test]
    fn no_space_is_a_system_error_with_its_errno() {
        let r = engine(&crate::Error::DeletingVolume {
            name: "v".into(),
            source: io(libc::ENOSPC),
        });
        assert_eq!((r.code, r.int1), (codes::SYSTEM_ERROR, libc::ENOSPC));
    }

    #[test]
    fn io_is_a_system_error_with_its_errno() {
        let r = registry(&RegistryError::Io {
            what: "cannot remove directory",
            path: "/x".into(),
            source: io(libc::ENOTEMPTY),
        });
        assert_eq!((r.code, r.int1), (codes::SYSTEM_ERROR, libc::ENOTEMPTY));
        assert!(r.message.starts_with("cannot remove directory /x: "));
    }
}
