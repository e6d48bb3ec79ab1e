//! Secret procedures: libvirt's secret driver API over qpoold's own [`SecretStore`].
//!
//! Owns: turning each secret call's typed arguments into [`SecretStore`] calls and its
//! answer into the typed reply, with libvirt's flag checks and how libvirt resolves a secret
//! handle (by UUID).
//! Must not: keep secrets or decide their rules (the store does), or put a value anywhere
//! but into `SECRET_GET_VALUE`'s reply for a secret that is not private.

use uuid::Uuid;
use zeroize::Zeroizing;

use super::{Ctx, allow_flags, xml};
use crate::pool::{SecretFilter, SecretStore};
use crate::rpc::errors;
use crate::rpc::messages::{
    ConnectListAllSecretsArgs, ConnectListAllSecretsRet, ConnectListSecretsArgs,
    ConnectListSecretsRet, ConnectNumOfSecretsRet, SecretDefineXmlArgs, SecretFlagsArgs,
    SecretGetValueRet, SecretLookupByUsageArgs, SecretLookupByUuidArgs, SecretRet,
    SecretSetValueArgs, SecretUndefineArgs, SecretValue, XmlRet,
};
use crate::rpc::proto::{NonnullSecret, RemoteError, flags};
use crate::rpc::xdr::BoundedVec;
use crate::xml::{SecretDef, SecretUsageType};

/// The daemon's store; a registry without one answers as a driver without secrets.
fn store<'a>(ctx: &'a Ctx<'_>) -> Result<&'a SecretStore, RemoteError> {
    ctx.registry
        .secrets()
        .map(AsRef::as_ref)
        .ok_or_else(errors::no_secret_driver)
}

/// The handle a client gets for a secret.
fn handle(uuid: &Uuid, def: &SecretDef) -> NonnullSecret {
    NonnullSecret {
        uuid: *uuid.as_bytes(),
        usage_type: def.usage.as_ref().map_or(0, |u| u.kind.number()),
        usage_id: def.usage.as_ref().map(|u| u.id.clone()).unwrap_or_default(),
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `REMOTE_PROC_CONNECT_NUM_OF_SECRETS`.
pub fn connect_num_of_secrets(
    ctx: &Ctx<'_>,
    (): (),
) -> Result<ConnectNumOfSecretsRet, RemoteError> {
    let num = count(store(ctx)?.list(SecretFilter::default()).len());
    Ok(ConnectNumOfSecretsRet { num })
}

/// `REMOTE_PROC_CONNECT_LIST_SECRETS`: UUIDs, at most `maxuuids`.
pub fn connect_list_secrets(
    ctx: &Ctx<'_>,
    args: ConnectListSecretsArgs,
) -> Result<ConnectListSecretsRet, RemoteError> {
    let max = usize::try_from(args.maxuuids).unwrap_or(0);
    let uuids = store(ctx)?
        .list(SecretFilter::default())
        .into_iter()
        .take(max)
        .map(|(u, _)| u.hyphenated().to_string())
        .collect();
    Ok(ConnectListSecretsRet {
        uuids: BoundedVec(uuids),
    })
}

/// `REMOTE_PROC_CONNECT_LIST_ALL_SECRETS`, with libvirt's ephemeral and private filters.
pub fn connect_list_all_secrets(
    ctx: &Ctx<'_>,
    args: ConnectListAllSecretsArgs,
) -> Result<ConnectListAllSecretsRet, RemoteError> {
    use flags::{
        CONNECT_LIST_SECRETS_EPHEMERAL as EPH, CONNECT_LIST_SECRETS_NO_EPHEMERAL as NO_EPH,
        CONNECT_LIST_SECRETS_NO_PRIVATE as NO_PRIV, CONNECT_LIST_SECRETS_PRIVATE as PRIV,
    };
    allow_flags(
        args.flags,
        EPH | NO_EPH | PRIV | NO_PRIV,
        "secretConnectListAllSecrets",
    )?;
    let pair = |yes: u32, no: u32| match (args.flags & yes != 0, args.flags & no != 0) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        _ => None,
    };
    let filter = SecretFilter {
        ephemeral: pair(EPH, NO_EPH),
        private: pair(PRIV, NO_PRIV),
    };
    let all = store(ctx)?.list(filter);
    let ret = u32::try_from(all.len()).unwrap_or(u32::MAX);
    let secrets = all
        .iter()
        .filter(|_| args.need_results != 0)
        .map(|(u, d)| handle(u, d))
        .collect();
    Ok(ConnectListAllSecretsRet {
        secrets: BoundedVec(secrets),
        ret,
    })
}

/// `REMOTE_PROC_SECRET_LOOKUP_BY_UUID`.
pub fn secret_lookup_by_uuid(
    ctx: &Ctx<'_>,
    args: SecretLookupByUuidArgs,
) -> Result<SecretRet, RemoteError> {
    let uuid = Uuid::from_bytes(args.uuid);
    let def = store(ctx)?
        .lookup_uuid(&uuid)
        .map_err(|e| errors::secret(&e))?;
    Ok(SecretRet {
        secret: handle(&uuid, &def),
    })
}

/// `REMOTE_PROC_SECRET_LOOKUP_BY_USAGE`.
pub fn secret_lookup_by_usage(
    ctx: &Ctx<'_>,
    args: SecretLookupByUsageArgs,
) -> Result<SecretRet, RemoteError> {
    let missing = || {
        errors::secret(&crate::pool::SecretStoreError::NoUsage(
            args.usage_id.clone(),
        ))
    };
    let kind = SecretUsageType::from_number(args.usage_type).ok_or_else(missing)?;
    let (uuid, def) = store(ctx)?
        .lookup_usage(kind, &args.usage_id)
        .map_err(|e| errors::secret(&e))?;
    Ok(SecretRet {
        secret: handle(&uuid, &def),
    })
}

/// `REMOTE_PROC_SECRET_DEFINE_XML`; VALIDATE is accepted (the parser is strict already).
pub fn secret_define_xml(
    ctx: &Ctx<'_>,
    args: SecretDefineXmlArgs,
) -> Result<SecretRet, RemoteError> {
    allow_flags(args.flags, flags::SECRET_DEFINE_VALIDATE, "secretDefineXML")?;
    let (uuid, def) = store(ctx)?
        .define(&args.xml)
        .map_err(|e| errors::secret(&e))?;
    Ok(SecretRet {
        secret: handle(&uuid, &def),
    })
}

/// `REMOTE_PROC_SECRET_GET_XML_DESC`.
pub fn secret_get_xml_desc(ctx: &Ctx<'_>, args: SecretFlagsArgs) -> Result<XmlRet, RemoteError> {
    allow_flags(args.flags, 0, "secretGetXMLDesc")?;
    let uuid = Uuid::from_bytes(args.secret.uuid);
    let def = store(ctx)?
        .lookup_uuid(&uuid)
        .map_err(|e| errors::secret(&e))?;
    Ok(xml(def.to_xml(&uuid)))
}

/// `REMOTE_PROC_SECRET_SET_VALUE`.
pub fn secret_set_value(ctx: &Ctx<'_>, args: SecretSetValueArgs) -> Result<(), RemoteError> {
    allow_flags(args.flags, 0, "secretSetValue")?;
    let uuid = Uuid::from_bytes(args.secret.uuid);
    store(ctx)?
        .set_value(&uuid, &args.value.0)
        .map_err(|e| errors::secret(&e))
}

/// `REMOTE_PROC_SECRET_GET_VALUE`: a private secret's value is never sent.
pub fn secret_get_value(
    ctx: &Ctx<'_>,
    args: SecretFlagsArgs,
) -> Result<SecretGetValueRet, RemoteError> {
    allow_flags(args.flags, 0, "secretGetValue")?;
    let uuid = Uuid::from_bytes(args.secret.uuid);
    let value: Zeroizing<Vec<u8>> = store(ctx)?.value(&uuid).map_err(|e| errors::secret(&e))?;
    Ok(SecretGetValueRet {
        value: SecretValue(value),
    })
}

/// `REMOTE_PROC_SECRET_UNDEFINE`.
pub fn secret_undefine(ctx: &Ctx<'_>, args: SecretUndefineArgs) -> Result<(), RemoteError> {
    let uuid = Uuid::from_bytes(args.secret.uuid);
    store(ctx)?.undefine(&uuid).map_err(|e| errors::secret(&e))
}
