//! Unit tests of `volume`.
use super::*;
use crate::model::{Compression, HashAlg, IvGen, LuksCipher, Preallocation};

#[test]
fn minimal_volume_defaults_to_raw() {
    let def =
        VolumeDef::parse("<volume><name>a.img</name><capacity unit='M'>8</capacity></volume>")
            .unwrap();
    assert_eq!(def.name, "a.img");
    assert_eq!(def.capacity, Some(8 << 20));
    assert_eq!(def.allocation, None);
    assert_eq!(def.format(), VolFormat::Raw);
}

#[test]
fn full_target_is_read() {
    let def = VolumeDef::parse(
            "<volume type='file' xmlns:qpool='urn:qpool:volume:1'>
               <name>d.qcow2</name>
               <capacity unit='GiB'>5</capacity>
               <allocation unit='KB'>3</allocation>
               <target>
                 <format type='qcow2'/>
                 <permissions><mode>0640</mode><owner>107</owner><group>-1</group><label>x</label></permissions>
                 <compat>0.10</compat>
                 <clusterSize unit='KiB'>2048</clusterSize>
                 <features><lazy_refcounts/><extended_l2/></features>
                 <nocow/>
                 <qpool:preallocation mode='falloc'/>
                 <qpool:refcount bits='64'/>
                 <qpool:compression type='zstd'/>
               </target>
             </volume>",
        )
        .unwrap();
    assert_eq!(def.capacity, Some(5 << 30));
    assert_eq!(def.allocation, Some(3000));
    let t = &def.target;
    assert_eq!(t.format, Some(VolFormat::Qcow2));
    assert_eq!(
        t.permissions,
        Permissions {
            mode: Some(0o640),
            owner: Some(107),
            group: None
        }
    );
    assert_eq!(t.compat, Some(Compat::V0_10));
    assert_eq!(t.cluster_size, Some(2 << 20));
    assert_eq!(
        t.features,
        Some(Features {
            lazy_refcounts: true,
            extended_l2: true
        })
    );
    assert!(t.nocow);
    assert_eq!(t.ext.preallocation, Some(Preallocation::Falloc));
    assert_eq!(t.ext.refcount_bits, Some(64));
    assert_eq!(t.ext.compression, Some(Compression::Zstd));
}

#[test]
fn other_prefix_for_the_extension_namespace_works() {
    let def = VolumeDef::parse(
            "<volume><name>x</name><capacity>1</capacity><target xmlns:q='urn:qpool:volume:1'><q:preallocation mode='metadata'/></target></volume>",
        )
        .unwrap();
    assert_eq!(def.target.ext.preallocation, Some(Preallocation::Metadata));
}

#[test]
fn dumpxml_only_elements_are_ignored() {
    let def = VolumeDef::parse(
            "<volume type='file'><name>c</name><key>/p/c</key><source></source>
             <capacity unit='bytes'>1073741824</capacity><allocation unit='bytes'>200704</allocation>
             <physical unit='bytes'>196624</physical>
             <target><path>/p/c</path><format type='qcow2'/>
             <timestamps><atime>1.5</atime><btime>0</btime></timestamps>
             <compat>1.1</compat><clusterSize unit='B'>65536</clusterSize><features/></target></volume>",
        )
        .unwrap();
    assert_eq!(def.capacity, Some(1 << 30));
    assert_eq!(def.allocation, Some(200_704));
    assert_eq!(def.target.features, Some(Features::default()));
    assert!(def.from_report);
}

#[test]
fn overlay_may_omit_capacity() {
    let def = VolumeDef::parse(
            "<volume><name>o</name><target><format type='qcow2'/></target><backingStore><path>/b.qcow2</path><format type='qcow2'/></backingStore></volume>",
        )
        .unwrap();
    assert_eq!(def.capacity, None);
    assert_eq!(
        def.backing_store,
        Some(BackingStoreDef {
            path: "/b.qcow2".into(),
            format: Some(VolFormat::Qcow2)
        })
    );
}

fn refusal(doc: &str) -> String {
    VolumeDef::parse(doc).unwrap_err().to_string()
}

#[test]
fn refusals_name_the_place() {
    let cases: &[(&str, &str)] = &[
        ("<pool/>", "root element is <pool>"),
        (
            "<volume><capacity>1</capacity></volume>",
            "/volume: missing <name>",
        ),
        ("<volume><name>x</name></volume>", "missing <capacity>"),
        (
            "<volume><name>x</name><capacity>-5</capacity></volume>",
            "/volume/capacity (line 1)",
        ),
        (
            "<volume><name>x</name><capacity unit='ZiB'>1</capacity></volume>",
            "/volume/capacity",
        ),
        (
            "<volume><name>x</name><capacity>1</capacity><target><format type='vmdk'/></target></volume>",
            "unsupported volume format 'vmdk' (qpool supports: raw, qcow2)",
        ),
        (
            "<volume><name>x</name><capacity>1</capacity><target><compat>2.0</compat></target></volume>",
            "unsupported compat level '2.0'",
        ),
        (
            "<volume><name>x</name><capacity>1</capacity><target><permissions><mode>0999</mode></permissions></target></volume>",
            "malformed octal mode",
        ),
        (
            "<volume><name>x</name><capacity>1</capacity><target><permissions><owner>root</owner></permissions></target></volume>",
            "malformed owner",
        ),
        (
            "<volume><name>x</name><capacity>1</capacity><target><features><bogus/></features></target></volume>",
            "unsupported feature 'bogus'",
        ),
        (
            "<volume><name>x</name><capacity>1</capacity><target><encryption format='qcow'/></target></volume>",
            "/volume/target/encryption/@format (line 1): unsupported encryption format 'qcow' (qpool supports: luks)",
        ),
        (
            "<volume><name>x</name><capacity>1</capacity><target><encryption/></target></volume>",
            "/volume/target/encryption: missing attribute 'format'",
        ),
        (
            "<volume><name>x</name><capacity>1</capacity><target><encryption format='luks'><secret type='passphrase' uuid='not-a-uuid'/></encryption></target></volume>",
            "malformed UUID 'not-a-uuid'",
        ),
        (
            "<volume><name>x</name><capacity>1</capacity><target><encryption format='luks'><secret type='ceph' usage='u'/></encryption></target></volume>",
            "unsupported secret type 'ceph'",
        ),
        (
            "<volume><name>x</name><capacity>1</capacity><target><encryption format='luks'><secret type='passphrase'/></encryption></target></volume>",
            "missing attribute 'uuid' or 'usage'",
        ),
        (
            "<volume><name>x</name><capacity>1</capacity><target><encryption format='luks'><secret type='passphrase' usage='a'/><secret type='passphrase' usage='b'/></encryption></target></volume>",
            "too many secrets",
        ),
        (
            "<volume><name>x</name><capacity>1</capacity><target><encryption format='luks'><cipher name='serpent' size='256'/></encryption></target></volume>",
            "unsupported cipher 'serpent' (qpool supports: aes)",
        ),
        (
            "<volume><name>x</name><capacity>1</capacity><target><encryption format='luks'><cipher name='aes' size='256' mode='cbc' hash='sha256'/></encryption></target></volume>",
            "unsupported cipher mode 'cbc' (qpool supports: xts)",
        ),
        (
            "<volume><name>x</name><capacity>1</capacity><target><encryption format='luks'><ivgen name='essiv' hash='sha256'/></encryption></target></volume>",
            "unsupported IV generator 'essiv'",
        ),
        (
            "<volume xmlns:q='urn:qpool:volume:1'><name>x</name><capacity>1</capacity><target><encryption format='luks' q:iter-time='0'/></target></volume>",
            "iteration time '0' must be 1 to 3600000 milliseconds",
        ),
        (
            "<volume xmlns:q='urn:qpool:volume:1'><name>x</name><capacity>1</capacity><target><encryption format='luks' q:slots='2'/></target></volume>",
            "unknown attribute 'slots'",
        ),
        (
            "<volume xmlns:q='urn:qpool:volume:1'><name>x</name><capacity>1</capacity><target><q:preallocation mode='lots'/></target></volume>",
            "/volume/target/preallocation/@mode (line 1): unknown preallocation mode 'lots'",
        ),
        (
            "<volume xmlns:q='urn:qpool:volume:1'><name>x</name><capacity>1</capacity><target><q:prealloc mode='off'/></target></volume>",
            "unknown qpool extension element 'prealloc'",
        ),
        (
            "<volume xmlns:q='urn:qpool:volume:1'><name>x</name><capacity>1</capacity><q:preallocation mode='off'/></volume>",
            "belong inside <target>",
        ),
        (
            "<volume xmlns:q='urn:qpool:volume:1'><name>x</name><capacity>1</capacity><target><q:refcount bits='3'/></target></volume>",
            "power of two",
        ),
        (
            "<volume type='weird'><name>x</name><capacity>1</capacity></volume>",
            "unknown volume type",
        ),
        (
            "<volume><name>x</name><backingStore><format type='raw'/></backingStore></volume>",
            "/volume/backingStore: missing <path>",
        ),
    ];
    for (doc, expected) in cases {
        let message = refusal(doc);
        assert!(
            message.contains(expected),
            "{doc}\n  gave: {message}\n  wanted: {expected}"
        );
    }
}

proptest::proptest! {
    #[test]
    fn parse_never_panics_on_mutated_documents(
        cut in 0usize..400,
        insert in ".{0,12}",
    ) {
        let doc = "<volume type='file' xmlns:q='urn:qpool:volume:1'><name>d.qcow2</name><capacity unit='G'>5</capacity><allocation>0</allocation><target><format type='qcow2'/><permissions><mode>0640</mode></permissions><compat>1.1</compat><features><lazy_refcounts/></features><q:preallocation mode='off'/></target><backingStore><path>/b</path></backingStore></volume>";
        let at = doc.char_indices().map(|(i, _)| i).nth(cut % doc.len()).unwrap_or(0);
        let mutated = format!("{}{}{}", &doc[..at], insert, &doc[at..]);
        let _ = VolumeDef::parse(&mutated);
        let truncated = &doc[..at];
        let _ = VolumeDef::parse(truncated);
    }
}

#[test]
fn report_has_libvirts_shape() {
    let report = VolumeReport {
        name: "c1.qcow2".into(),
        path: "/srv/pool/c1.qcow2".into(),
        capacity: 1 << 30,
        allocation: 200_704,
        physical: 196_624,
        format: VolFormat::Qcow2,
        mode: 0o600,
        owner: 0,
        group: 0,
        times: [
            Timestamp {
                sec: 1_795_578_657,
                nsec: 101_721_508,
            },
            Timestamp {
                sec: 1_795_578_657,
                nsec: 98_947_005,
            },
            Timestamp {
                sec: 1_795_578_657,
                nsec: 0,
            },
        ],
        qcow2: Some(Qcow2Report {
            compat: Compat::V1_1,
            cluster_size: 65536,
            features: Features {
                lazy_refcounts: true,
                extended_l2: false,
            },
        }),
        backing: None,
        encryption: None,
    };
    let expected = "<volume type='file'>
  <name>c1.qcow2</name>
  <key>/srv/pool/c1.qcow2</key>
  <capacity unit='bytes'>1073741824</capacity>
  <allocation unit='bytes'>200704</allocation>
  <physical unit='bytes'>196624</physical>
  <target>
    <path>/srv/pool/c1.qcow2</path>
    <format type='qcow2'/>
    <permissions>
      <mode>0600</mode>
      <owner>0</owner>
      <group>0</group>
    </permissions>
    <timestamps>
      <atime>1795578657.101721508</atime>
      <mtime>1795578657.098947005</mtime>
      <ctime>1795578657</ctime>
      <btime>0</btime>
    </timestamps>
    <compat>1.1</compat>
    <clusterSize unit='B'>65536</clusterSize>
    <features>
      <lazy_refcounts/>
    </features>
  </target>
</volume>
";
    assert_eq!(report.to_xml(), expected);
}

#[test]
fn encryption_is_read_with_qemu_img_defaults_for_what_is_left_out() {
    let def = VolumeDef::parse(
        "<volume xmlns:q='urn:qpool:volume:1'><name>e</name><capacity>1</capacity><target>
           <format type='qcow2'/>
           <encryption format='luks' q:iter-time='10'>
             <secret type='passphrase' uuid='11111111222233334444AAAAAAAAAAAA'/>
           </encryption>
         </target></volume>",
    )
    .unwrap();
    let enc = def.target.encryption.unwrap();
    assert_eq!(enc.format, crate::model::EncryptionFormat::Luks);
    assert_eq!(
        enc.secret,
        Some(SecretRef::Uuid(
            "11111111-2222-3333-4444-aaaaaaaaaaaa".into()
        ))
    );
    assert_eq!(enc.cipher, LuksCipher::default());
    assert!(!enc.cipher_named, "no <cipher> or <ivgen>");
    assert_eq!(enc.iter_time_ms, Some(10));

    let def = VolumeDef::parse(
        "<volume><name>e</name><capacity>1</capacity><target>
           <encryption format='luks' engine='qemu'>
             <secret type='passphrase' usage='/var/lib/qpool/images/e'/>
             <cipher name='aes' size='128' mode='xts' hash='sha512'/>
             <ivgen name='plain' hash='sha1'/>
           </encryption>
         </target></volume>",
    )
    .unwrap();
    let enc = def.target.encryption.unwrap();
    assert!(enc.cipher_named);
    assert_eq!(
        enc.secret,
        Some(SecretRef::Usage("/var/lib/qpool/images/e".into()))
    );
    assert_eq!(
        enc.cipher,
        LuksCipher {
            bits: 128,
            mode: crate::model::CipherMode::Xts,
            ivgen: IvGen::Plain,
            ivgen_hash: Some(HashAlg::Sha1),
            hash: HashAlg::Sha512,
        }
    );
    assert_eq!(enc.iter_time_ms, None);
}

#[test]
fn encryption_reports_like_libvirt_and_hides_the_cipher_without_a_secret() {
    let mut report = VolumeReport {
        name: "e".into(),
        path: "/p/e".into(),
        capacity: 1,
        allocation: 0,
        physical: 0,
        format: VolFormat::Raw,
        mode: 0o600,
        owner: 0,
        group: 0,
        times: [Timestamp::default(); 3],
        qcow2: None,
        backing: None,
        encryption: Some(EncryptionReport {
            format: crate::model::EncryptionFormat::Luks,
            secret: None,
            cipher: Some(LuksCipher::default()),
        }),
    };
    let xml = report.to_xml();
    assert!(
        xml.contains("    </timestamps>\n    <encryption format='luks'/>\n  </target>"),
        "{xml}"
    );
    report.encryption = Some(EncryptionReport {
        format: crate::model::EncryptionFormat::Luks,
        secret: Some(SecretRef::Uuid(
            "11111111-2222-3333-4444-555555555555".into(),
        )),
        cipher: Some(LuksCipher::default()),
    });
    let xml = report.to_xml();
    assert!(
        xml.contains(
            "    <encryption format='luks'>
      <secret type='passphrase' uuid='11111111-2222-3333-4444-555555555555'/>
      <cipher name='aes' size='256' mode='xts' hash='sha256'/>
      <ivgen name='plain64'/>
    </encryption>
"
        ),
        "{xml}"
    );
    let back = VolumeDef::parse(&xml).unwrap().target.encryption.unwrap();
    assert_eq!(back.cipher, LuksCipher::default());
}

#[test]
fn a_definition_prints_back_as_libvirt_formats_it() {
    let def = VolumeDef::parse(
        "<volume><name>a&lt;b</name><key>/k</key><capacity unit='KiB'>1</capacity>
         <target><path>/p/a</path><format type='qcow2'/>
         <permissions><mode>0</mode><owner>4294967295</owner><label>t</label></permissions>
         <features/></target>
         <backingStore><path>/b</path><permissions><mode>0644</mode></permissions></backingStore></volume>",
    )
    .unwrap();
    assert_eq!(
        def.to_xml(),
        "<volume type='file'>
  <name>a&lt;b</name>
  <key>/k</key>
  <capacity unit='bytes'>1024</capacity>
  <allocation unit='bytes'>1024</allocation>
  <target>
    <path>/p/a</path>
    <format type='qcow2'/>
    <permissions>
      <mode>00</mode>
      <label>t</label>
    </permissions>
    <compat>1.1</compat>
    <features/>
  </target>
  <backingStore>
    <path>/b</path>
    <format type='raw'/>
    <permissions>
      <mode>0644</mode>
    </permissions>
  </backingStore>
</volume>
"
    );
}

#[test]
fn a_create_from_may_leave_the_capacity_out_and_other_types_are_refused() {
    let doc = "<volume><name>c</name><target><format type='raw'/></target></volume>";
    assert!(VolumeDef::parse(doc).is_err());
    let def = VolumeDef::parse_with(doc, CapacityRule::FromSource).unwrap();
    assert_eq!(def.capacity, None);
    let e = VolumeDef::parse("<volume type='block'><name>b</name><capacity>1</capacity></volume>")
        .unwrap_err();
    assert!(e.to_string().contains("volume type 'block'"), "{e}");
}
