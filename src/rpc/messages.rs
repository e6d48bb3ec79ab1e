//! The argument and return structs of the storage procedures, named and laid out as in
//! libvirt's `remote_protocol.x` (`remote_storage_vol_get_info_args` is
//! [`StorageVolGetInfoArgs`]), each with its XDR codec.
//!
//! Owns: the wire shape of every call's arguments and reply, and of the event messages.
//! Must not: interpret them; handlers do.

use super::proto::{NonnullSecret, NonnullStoragePool, NonnullStorageVol};
use super::xdr::{BoundedVec, Decoder, Encoder, Xdr, XdrError};

/// Defines a struct of `remote_protocol.x` whose XDR encoding is its fields in order.
macro_rules! xdr_struct {
    ($(
        $(#[$meta:meta])*
        $name:ident { $($field:ident: $ty:ty),* $(,)? }
    )*) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            $(
                #[doc = concat!("`", stringify!($field), "`.")]
                pub $field: $ty,
            )*
        }

        impl Xdr for $name {
            #[allow(unused_variables)]
            fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
                Ok(Self { $($field: <$ty as Xdr>::decode(d)?,)* })
            }
            #[allow(unused_variables)]
            fn encode(&self, e: &mut Encoder) {
                $(self.$field.encode(e);)*
            }
        }
    )*};
}

xdr_struct! {
    /// `remote_connect_open_args`.
    ConnectOpenArgs { name: Option<String>, flags: u32 }
    /// `remote_connect_supports_feature_args`.
    ConnectSupportsFeatureArgs { feature: i32 }
    /// `remote_connect_supports_feature_ret`.
    ConnectSupportsFeatureRet { supported: i32 }
    /// `remote_auth_list_ret`.
    AuthListRet { types: Vec<u32> }
    /// `remote_typed_param`: one named, typed value.
    TypedParam { field: String, value: TypedParamValue }
    /// `remote_connect_set_identity_args`: the identity of the client a daemon (virtqemud)
    /// forwards calls for.
    ConnectSetIdentityArgs { params: BoundedVec<TypedParam, CONNECT_IDENTITY_PARAMS_MAX>, flags: u32 }
    /// `remote_connect_get_type_ret`.
    ConnectGetTypeRet { type_: String }
    /// `remote_connect_get_version_ret`.
    ConnectGetVersionRet { hv_ver: u64 }
    /// `remote_connect_get_lib_version_ret`.
    ConnectGetLibVersionRet { lib_ver: u64 }
    /// `remote_connect_get_hostname_ret`.
    ConnectGetHostnameRet { hostname: String }
    /// `remote_connect_get_uri_ret`.
    ConnectGetUriRet { uri: String }
    /// `remote_connect_is_secure_ret`.
    ConnectIsSecureRet { secure: i32 }
    /// `remote_connect_get_capabilities_ret`.
    ConnectGetCapabilitiesRet { capabilities: String }
    /// `remote_connect_get_sysinfo_args`.
    ConnectGetSysinfoArgs { flags: u32 }
    /// `remote_connect_get_storage_pool_capabilities_args`.
    ConnectGetStoragePoolCapabilitiesArgs { flags: u32 }
    /// `remote_connect_get_storage_pool_capabilities_ret`.
    ConnectGetStoragePoolCapabilitiesRet { capabilities: String }
    /// `remote_connect_num_of_storage_pools_ret` (also the defined-pools variant).
    ConnectNumOfStoragePoolsRet { num: i32 }
    /// `remote_connect_list_storage_pools_args` (also the defined-pools variant).
    ConnectListStoragePoolsArgs { maxnames: i32 }
    /// `remote_connect_list_storage_pools_ret` (also the defined-pools variant).
    ConnectListStoragePoolsRet { names: Vec<String> }
    /// `remote_connect_list_all_storage_pools_args`.
    ConnectListAllStoragePoolsArgs { need_results: i32, flags: u32 }
    /// `remote_connect_list_all_storage_pools_ret`.
    ConnectListAllStoragePoolsRet { pools: Vec<NonnullStoragePool>, ret: u32 }
    /// `remote_connect_storage_pool_event_register_any_args`.
    ConnectStoragePoolEventRegisterAnyArgs { event_id: i32, pool: Option<NonnullStoragePool> }
    /// `remote_connect_storage_pool_event_register_any_ret`.
    ConnectStoragePoolEventRegisterAnyRet { callback_id: i32 }
    /// `remote_connect_storage_pool_event_deregister_any_args`.
    ConnectStoragePoolEventDeregisterAnyArgs { callback_id: i32 }
    /// `remote_storage_pool_event_lifecycle_msg`.
    StoragePoolEventLifecycleMsg { callback_id: i32, pool: NonnullStoragePool, event: i32, detail: i32 }
    /// `remote_storage_pool_event_refresh_msg`.
    StoragePoolEventRefreshMsg { callback_id: i32, pool: NonnullStoragePool }

    /// `remote_connect_find_storage_pool_sources_args`.
    ConnectFindStoragePoolSourcesArgs { type_: String, src_spec: Option<String>, flags: u32 }
    /// `remote_connect_list_all_domains_args`.
    ConnectListAllDomainsArgs { need_results: i32, flags: u32 }
    /// `remote_nonnull_domain`.
    NonnullDomain { name: String, uuid: [u8; 16], id: i32 }
    /// `remote_connect_list_all_domains_ret`.
    ConnectListAllDomainsRet { domains: Vec<NonnullDomain>, ret: u32 }
    /// `remote_node_get_info_ret` (`memory` in KiB).
    NodeGetInfoRet { model: CharArray32, memory: u64, cpus: i32, mhz: i32, nodes: i32, sockets: i32, cores: i32, threads: i32 }
    /// `remote_storage_pool_lookup_by_name_args`.
    StoragePoolLookupByNameArgs { name: String }
    /// `remote_storage_pool_lookup_by_uuid_args`.
    StoragePoolLookupByUuidArgs { uuid: [u8; 16] }
    /// `remote_storage_pool_lookup_by_volume_args`.
    StoragePoolLookupByVolumeArgs { vol: NonnullStorageVol }
    /// `remote_storage_pool_lookup_by_target_path_args`.
    StoragePoolLookupByTargetPathArgs { path: String }
    /// The `_ret` of every pool lookup and of pool create/define.
    StoragePoolRet { pool: NonnullStoragePool }
    /// `remote_storage_pool_create_xml_args`.
    StoragePoolCreateXmlArgs { xml: String, flags: u32 }
    /// `remote_storage_pool_define_xml_args`.
    StoragePoolDefineXmlArgs { xml: String, flags: u32 }
    /// `remote_storage_pool_create_args`, `_build_args`, `_delete_args`, `_refresh_args`:
    /// a pool and flags.
    StoragePoolFlagsArgs { pool: NonnullStoragePool, flags: u32 }
    /// `remote_storage_pool_destroy_args`, `_undefine_args`, `_get_info_args`,
    /// `_get_autostart_args`, `_is_active_args`, `_is_persistent_args`,
    /// `_num_of_volumes_args`: a pool alone.
    StoragePoolArgs { pool: NonnullStoragePool }
    /// `remote_storage_pool_get_info_ret` (`state` is an `unsigned char`).
    StoragePoolGetInfoRet { state: u32, capacity: u64, allocation: u64, available: u64 }
    /// `remote_storage_pool_get_xml_desc_args`.
    StoragePoolGetXmlDescArgs { pool: NonnullStoragePool, flags: u32 }
    /// `remote_storage_pool_get_xml_desc_ret` (and every other `_ret` of one XML string).
    XmlRet { xml: String }
    /// `remote_storage_pool_set_autostart_args`.
    StoragePoolSetAutostartArgs { pool: NonnullStoragePool, autostart: i32 }
    /// `remote_storage_pool_get_autostart_ret`, `_is_active_ret`, `_is_persistent_ret`,
    /// `_num_of_volumes_ret`: one `int`.
    IntRet { value: i32 }
    /// `remote_storage_pool_list_volumes_args`.
    StoragePoolListVolumesArgs { pool: NonnullStoragePool, maxnames: i32 }
    /// `remote_storage_pool_list_volumes_ret`.
    StoragePoolListVolumesRet { names: Vec<String> }
    /// `remote_storage_pool_list_all_volumes_args`.
    StoragePoolListAllVolumesArgs { pool: NonnullStoragePool, need_results: i32, flags: u32 }
    /// `remote_storage_pool_list_all_volumes_ret`.
    StoragePoolListAllVolumesRet { vols: Vec<NonnullStorageVol>, ret: u32 }

    /// `remote_storage_vol_lookup_by_name_args`.
    StorageVolLookupByNameArgs { pool: NonnullStoragePool, name: String }
    /// `remote_storage_vol_lookup_by_key_args`.
    StorageVolLookupByKeyArgs { key: String }
    /// `remote_storage_vol_lookup_by_path_args`.
    StorageVolLookupByPathArgs { path: String }
    /// The `_ret` of every volume lookup and create.
    StorageVolRet { vol: NonnullStorageVol }
    /// `remote_storage_vol_create_xml_args`.
    StorageVolCreateXmlArgs { pool: NonnullStoragePool, xml: String, flags: u32 }
    /// `remote_storage_vol_create_xml_from_args`.
    StorageVolCreateXmlFromArgs { pool: NonnullStoragePool, xml: String, clonevol: NonnullStorageVol, flags: u32 }
    /// `remote_storage_vol_get_info_args`, `_get_path_args`: a volume alone.
    StorageVolArgs { vol: NonnullStorageVol }
    /// `remote_storage_vol_delete_args`, `_wipe_args`, `_get_xml_desc_args`,
    /// `_get_info_flags_args`: a volume and flags.
    StorageVolFlagsArgs { vol: NonnullStorageVol, flags: u32 }
    /// `remote_storage_vol_get_info_ret` (`type` is a `char`).
    StorageVolGetInfoRet { type_: i32, capacity: u64, allocation: u64 }
    /// `remote_storage_vol_get_path_ret`.
    StorageVolGetPathRet { name: String }
    /// `remote_storage_vol_wipe_pattern_args`.
    StorageVolWipePatternArgs { vol: NonnullStorageVol, algorithm: u32, flags: u32 }
    /// `remote_storage_vol_resize_args`.
    StorageVolResizeArgs { vol: NonnullStorageVol, capacity: u64, flags: u32 }
    /// `remote_storage_vol_upload_args`, `_download_args`.
    StorageVolStreamArgs { vol: NonnullStorageVol, offset: u64, length: u64, flags: u32 }
}

/// `char x[32]` of `remote_protocol.x` (the node's CPU model): a NUL-padded string, each of
/// whose 32 chars XDR widens to 4 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharArray32(pub [u8; 32]);

impl CharArray32 {
    /// `text` NUL-padded, cut at 31 bytes so that a NUL always ends it.
    pub fn new(text: &str) -> CharArray32 {
        let mut bytes = [0u8; 32];
        for (slot, b) in bytes.iter_mut().zip(text.bytes().take(31)) {
            *slot = b;
        }
        CharArray32(bytes)
    }
}

impl Xdr for CharArray32 {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        let mut bytes = [0u8; 32];
        for slot in bytes.iter_mut() {
            *slot = i32::decode(d)?.to_le_bytes()[0];
        }
        Ok(CharArray32(bytes))
    }
    fn encode(&self, e: &mut Encoder) {
        for &b in &self.0 {
            // A C `char` (signed here), widened.
            i32::from(b.cast_signed()).encode(e);
        }
    }
}

/// REMOTE_CONNECT_IDENTITY_PARAMS_MAX: most parameters a `CONNECT_SET_IDENTITY` carries.
pub const CONNECT_IDENTITY_PARAMS_MAX: usize = 20;

/// `remote_typed_param_value`: a union switched on `virTypedParameterType` (1 to 7). Any
/// other discriminant does not decode, as libvirt's XDR union has no default arm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypedParamValue {
    /// VIR_TYPED_PARAM_INT (1): `int`.
    Int(i32),
    /// VIR_TYPED_PARAM_UINT (2): `unsigned int`.
    UInt(u32),
    /// VIR_TYPED_PARAM_LLONG (3): `hyper`.
    LLong(i64),
    /// VIR_TYPED_PARAM_ULLONG (4): `unsigned hyper`.
    ULLong(u64),
    /// VIR_TYPED_PARAM_DOUBLE (5): `double`, kept as the IEEE 754 bits XDR carries.
    Double(u64),
    /// VIR_TYPED_PARAM_BOOLEAN (6): `int`.
    Boolean(i32),
    /// VIR_TYPED_PARAM_STRING (7): `remote_nonnull_string`.
    String(String),
}

impl TypedParamValue {
    /// The `virTypedParameterType` number.
    pub fn type_number(&self) -> i32 {
        match self {
            Self::Int(_) => 1,
            Self::UInt(_) => 2,
            Self::LLong(_) => 3,
            Self::ULLong(_) => 4,
            Self::Double(_) => 5,
            Self::Boolean(_) => 6,
            Self::String(_) => 7,
        }
    }

    /// libvirt's name of the type (`virTypedParameterTypeToString`).
    pub fn type_name(&self) -> &'static str {
        typed_param_type_name(self.type_number())
    }
}

/// libvirt's name of `virTypedParameterType` `number` (`virTypedParameterTypeToString`).
pub fn typed_param_type_name(number: i32) -> &'static str {
    match number {
        1 => "int",
        2 => "uint",
        3 => "llong",
        4 => "ullong",
        5 => "double",
        6 => "boolean",
        7 => "string",
        _ => "",
    }
}

impl std::fmt::Display for TypedParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Int(v) | Self::Boolean(v) => write!(f, "{v}"),
            Self::UInt(v) => write!(f, "{v}"),
            Self::LLong(v) => write!(f, "{v}"),
            Self::ULLong(v) => write!(f, "{v}"),
            Self::Double(bits) => write!(f, "{}", f64::from_bits(*bits)),
            Self::String(s) => write!(f, "{s:?}"),
        }
    }
}

impl Xdr for TypedParamValue {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        let at = d.position();
        Ok(match d.i32()? {
            1 => Self::Int(d.i32()?),
            2 => Self::UInt(d.u32()?),
            3 => Self::LLong(d.i64()?),
            4 => Self::ULLong(d.u64()?),
            5 => Self::Double(d.u64()?),
            6 => Self::Boolean(d.i32()?),
            7 => Self::String(d.string()?),
            other => {
                return Err(XdrError::Discriminant {
                    at,
                    value: other.cast_unsigned(),
                });
            }
        })
    }
    fn encode(&self, e: &mut Encoder) {
        e.i32(self.type_number());
        match self {
            Self::Int(v) | Self::Boolean(v) => e.i32(*v),
            Self::UInt(v) => e.u32(*v),
            Self::LLong(v) => e.i64(*v),
            Self::ULLong(v) | Self::Double(v) => e.u64(*v),
            Self::String(s) => e.string(s),
        };
    }
}

/// `REMOTE_SECRET_VALUE_MAX`.
pub const SECRET_VALUE_MAX: usize = 65536;
/// `REMOTE_SECRET_LIST_MAX`.
pub const SECRET_LIST_MAX: usize = 16384;

/// `opaque value<REMOTE_SECRET_VALUE_MAX>`: a secret's value, wiped when dropped and never
/// shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(pub zeroize::Zeroizing<Vec<u8>>);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue(<{} bytes>)", self.0.len())
    }
}

impl Xdr for SecretValue {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        Ok(SecretValue(zeroize::Zeroizing::new(
            d.opaque(SECRET_VALUE_MAX)?.to_vec(),
        )))
    }
    fn encode(&self, e: &mut Encoder) {
        e.opaque(&self.0);
    }
}

xdr_struct! {
    /// `remote_connect_num_of_secrets_ret`.
    ConnectNumOfSecretsRet { num: i32 }
    /// `remote_connect_list_secrets_args`.
    ConnectListSecretsArgs { maxuuids: i32 }
    /// `remote_connect_list_secrets_ret`.
    ConnectListSecretsRet { uuids: BoundedVec<String, SECRET_LIST_MAX> }
    /// `remote_secret_lookup_by_uuid_args`.
    SecretLookupByUuidArgs { uuid: [u8; 16] }
    /// `remote_secret_lookup_by_uuid_ret` (and every reply that is one secret).
    SecretRet { secret: NonnullSecret }
    /// `remote_secret_define_xml_args`.
    SecretDefineXmlArgs { xml: String, flags: u32 }
    /// `remote_secret_get_xml_desc_args` (and `remote_secret_get_value_args`).
    SecretFlagsArgs { secret: NonnullSecret, flags: u32 }
    /// `remote_secret_set_value_args`.
    SecretSetValueArgs { secret: NonnullSecret, value: SecretValue, flags: u32 }
    /// `remote_secret_get_value_ret`.
    SecretGetValueRet { value: SecretValue }
    /// `remote_secret_undefine_args`.
    SecretUndefineArgs { secret: NonnullSecret }
    /// `remote_secret_lookup_by_usage_args`.
    SecretLookupByUsageArgs { usage_type: i32, usage_id: String }
    /// `remote_connect_list_all_secrets_args`.
    ConnectListAllSecretsArgs { need_results: i32, flags: u32 }
    /// `remote_connect_list_all_secrets_ret`.
    ConnectListAllSecretsRet { secrets: BoundedVec<NonnullSecret, SECRET_LIST_MAX>, ret: u32 }
}

/// Names of `remote_protocol.x` whose layout another struct here already has.
macro_rules! xdr_alias {
    ($($alias:ident = $name:ident, $x:literal;)*) => {$(
        #[doc = concat!("`", $x, "`.")]
        pub type $alias = $name;
    )*};
}

xdr_alias! {
    SecretLookupByUuidRet = SecretRet, "remote_secret_lookup_by_uuid_ret";
    SecretLookupByUsageRet = SecretRet, "remote_secret_lookup_by_usage_ret";
    SecretDefineXmlRet = SecretRet, "remote_secret_define_xml_ret";
    SecretGetXmlDescArgs = SecretFlagsArgs, "remote_secret_get_xml_desc_args";
    SecretGetValueArgs = SecretFlagsArgs, "remote_secret_get_value_args";
    SecretGetXmlDescRet = XmlRet, "remote_secret_get_xml_desc_ret";
    ConnectNumOfDefinedStoragePoolsRet = ConnectNumOfStoragePoolsRet, "remote_connect_num_of_defined_storage_pools_ret";
    ConnectListDefinedStoragePoolsArgs = ConnectListStoragePoolsArgs, "remote_connect_list_defined_storage_pools_args";
    ConnectListDefinedStoragePoolsRet = ConnectListStoragePoolsRet, "remote_connect_list_defined_storage_pools_ret";
    StoragePoolLookupByNameRet = StoragePoolRet, "remote_storage_pool_lookup_by_name_ret";
    StoragePoolLookupByUuidRet = StoragePoolRet, "remote_storage_pool_lookup_by_uuid_ret";
    StoragePoolLookupByVolumeRet = StoragePoolRet, "remote_storage_pool_lookup_by_volume_ret";
    StoragePoolLookupByTargetPathRet = StoragePoolRet, "remote_storage_pool_lookup_by_target_path_ret";
    StoragePoolCreateXmlRet = StoragePoolRet, "remote_storage_pool_create_xml_ret";
    StoragePoolDefineXmlRet = StoragePoolRet, "remote_storage_pool_define_xml_ret";
    StoragePoolCreateArgs = StoragePoolFlagsArgs, "remote_storage_pool_create_args";
    StoragePoolBuildArgs = StoragePoolFlagsArgs, "remote_storage_pool_build_args";
    StoragePoolDeleteArgs = StoragePoolFlagsArgs, "remote_storage_pool_delete_args";
    StoragePoolRefreshArgs = StoragePoolFlagsArgs, "remote_storage_pool_refresh_args";
    StoragePoolDestroyArgs = StoragePoolArgs, "remote_storage_pool_destroy_args";
    StoragePoolUndefineArgs = StoragePoolArgs, "remote_storage_pool_undefine_args";
    StoragePoolGetInfoArgs = StoragePoolArgs, "remote_storage_pool_get_info_args";
    StoragePoolGetAutostartArgs = StoragePoolArgs, "remote_storage_pool_get_autostart_args";
    StoragePoolIsActiveArgs = StoragePoolArgs, "remote_storage_pool_is_active_args";
    StoragePoolIsPersistentArgs = StoragePoolArgs, "remote_storage_pool_is_persistent_args";
    StoragePoolNumOfVolumesArgs = StoragePoolArgs, "remote_storage_pool_num_of_volumes_args";
    StoragePoolGetXmlDescRet = XmlRet, "remote_storage_pool_get_xml_desc_ret";
    StoragePoolGetAutostartRet = IntRet, "remote_storage_pool_get_autostart_ret";
    StoragePoolIsActiveRet = IntRet, "remote_storage_pool_is_active_ret";
    StoragePoolIsPersistentRet = IntRet, "remote_storage_pool_is_persistent_ret";
    StoragePoolNumOfVolumesRet = IntRet, "remote_storage_pool_num_of_volumes_ret";
    StorageVolLookupByNameRet = StorageVolRet, "remote_storage_vol_lookup_by_name_ret";
    StorageVolLookupByKeyRet = StorageVolRet, "remote_storage_vol_lookup_by_key_ret";
    StorageVolLookupByPathRet = StorageVolRet, "remote_storage_vol_lookup_by_path_ret";
    StorageVolCreateXmlRet = StorageVolRet, "remote_storage_vol_create_xml_ret";
    StorageVolCreateXmlFromRet = StorageVolRet, "remote_storage_vol_create_xml_from_ret";
    StorageVolGetInfoArgs = StorageVolArgs, "remote_storage_vol_get_info_args";
    StorageVolGetPathArgs = StorageVolArgs, "remote_storage_vol_get_path_args";
    StorageVolDeleteArgs = StorageVolFlagsArgs, "remote_storage_vol_delete_args";
    StorageVolWipeArgs = StorageVolFlagsArgs, "remote_storage_vol_wipe_args";
    StorageVolGetXmlDescArgs = StorageVolFlagsArgs, "remote_storage_vol_get_xml_desc_args";
    StorageVolGetInfoFlagsArgs = StorageVolFlagsArgs, "remote_storage_vol_get_info_flags_args";
    StorageVolGetInfoFlagsRet = StorageVolGetInfoRet, "remote_storage_vol_get_info_flags_ret";
    StorageVolGetXmlDescRet = XmlRet, "remote_storage_vol_get_xml_desc_ret";
    StorageVolUploadArgs = StorageVolStreamArgs, "remote_storage_vol_upload_args";
    StorageVolDownloadArgs = StorageVolStreamArgs, "remote_storage_vol_download_args";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::words;
    use crate::rpc::xdr::to_bytes;

    /// Two of the six parameters virtqemud sends: user-name (string) and process-id (llong).
    const IDENTITY_ARGS: &str = "00000002 \
        00000009 75736572 2d6e616d 65000000 00000007 00000004 726f6f74 \
        0000000a 70726f63 6573732d 69640000 00000003 00000000 000004d2 \
        00000000";

    #[test]
    fn set_identity_args_decode_typed_parameters_by_their_type() {
        let bytes = words(IDENTITY_ARGS);
        let mut d = Decoder::new(&bytes);
        let args = ConnectSetIdentityArgs::decode(&mut d).unwrap();
        assert_eq!(d.remaining(), 0);
        assert_eq!(
            args.params.0,
            vec![
                TypedParam {
                    field: "user-name".into(),
                    value: TypedParamValue::String("root".into())
                },
                TypedParam {
                    field: "process-id".into(),
                    value: TypedParamValue::LLong(1234)
                },
            ]
        );
        assert_eq!(to_bytes(&args), bytes);
    }

    #[test]
    fn set_identity_args_refuse_an_unknown_type_and_a_21st_parameter() {
        let unknown_type = words("00000001 00000001 61000000 00000008 00000000 00000000");
        assert!(matches!(
            ConnectSetIdentityArgs::decode(&mut Decoder::new(&unknown_type)),
            Err(XdrError::Discriminant { value: 8, .. })
        ));
        let too_many = words("00000015");
        assert!(matches!(
            ConnectSetIdentityArgs::decode(&mut Decoder::new(&too_many)),
            Err(XdrError::TooLong {
                len: 21,
                max: 20,
                ..
            })
        ));
    }

    #[test]
    fn a_list_all_reply_without_results_is_an_empty_array_and_a_count() {
        let ret = ConnectListAllStoragePoolsRet {
            pools: Vec::new(),
            ret: 3,
        };
        assert_eq!(to_bytes(&ret), words("00000000 00000003"));
    }

    #[test]
    fn vol_info_reply_matches_the_protocol_layout() {
        let ret = StorageVolGetInfoRet {
            type_: 0,
            capacity: 1 << 30,
            allocation: 4096,
        };
        assert_eq!(
            to_bytes(&ret),
            words("00000000 00000000 40000000 00000000 00001000")
        );
    }

    #[test]
    fn node_info_widens_each_model_char_to_four_bytes() {
        let ret = NodeGetInfoRet {
            model: CharArray32::new("x86_64"),
            memory: 1 << 20,
            cpus: 2,
            mhz: 2800,
            nodes: 1,
            sockets: 1,
            cores: 2,
            threads: 1,
        };
        let bytes = to_bytes(&ret);
        assert_eq!(bytes.len(), 32 * 4 + 8 + 6 * 4);
        assert_eq!(&bytes[..8], &words("00000078 00000038")[..], "'x' '8'");
        assert_eq!(&bytes[24..28], &[0, 0, 0, 0], "NUL after the model");
        let back = NodeGetInfoRet::decode(&mut Decoder::new(&bytes)).unwrap();
        assert_eq!(back, ret);
    }

    #[test]
    fn an_optional_pool_decodes_with_its_marker() {
        let bytes =
            words("00000001 00000001 00000002 6c760000 298b18be 8fe04134 80448b5e 03b856c4");
        let args =
            ConnectStoragePoolEventRegisterAnyArgs::decode(&mut Decoder::new(&bytes)).unwrap();
        assert_eq!(args.event_id, 1);
        assert_eq!(args.pool.unwrap().name, "lv");
    }
}
