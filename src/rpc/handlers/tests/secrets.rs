//! The secret procedures against the fixture's secret store: define, list, look up, values,
//! and a private value never given out.

use super::*;

#[test]
fn secrets_are_defined_listed_looked_up_and_their_private_values_kept() {
    let f = Fixture::new();
    let defined: SecretRet = f
        .call(
            142,
            &SecretDefineXmlArgs {
                xml: SECRET.into(),
                flags: 0,
            },
        )
        .unwrap();
    assert_eq!(defined.secret, secret_handle());
    let n: ConnectNumOfSecretsRet = f.call(139, &()).unwrap();
    assert_eq!(n.num, 1);
    let uuids: ConnectListSecretsRet = f
        .call(140, &ConnectListSecretsArgs { maxuuids: 5 })
        .unwrap();
    assert_eq!(uuids.uuids.0, ["07070707-0707-0707-0707-070707070707"]);
    for (flags, expected) in [(0, 1), (1, 0), (2, 1), (4, 1), (8, 0), (3, 1)] {
        let all: ConnectListAllSecretsRet = f
            .call(
                287,
                &ConnectListAllSecretsArgs {
                    need_results: 1,
                    flags,
                },
            )
            .unwrap();
        assert_eq!(
            (all.ret, all.secrets.0.len()),
            (expected, expected as usize),
            "{flags}"
        );
    }
    let by_usage: SecretRet = f
        .call(
            147,
            &SecretLookupByUsageArgs {
                usage_type: 1,
                usage_id: "/p/e.img".into(),
            },
        )
        .unwrap();
    assert_eq!(by_usage.secret, secret_handle());
    let e = f
        .call::<_, SecretRet>(
            147,
            &SecretLookupByUsageArgs {
                usage_type: 2,
                usage_id: "/p/e.img".into(),
            },
        )
        .unwrap_err();
    assert_eq!(
        (e.code, e.domain, e.message.as_str()),
        (
            codes::NO_SECRET,
            crate::rpc::proto::domains::SECRET,
            "Secret not found: no secret with matching usage '/p/e.img'"
        )
    );
    let xml: XmlRet = f
        .call(
            143,
            &SecretFlagsArgs {
                secret: secret_handle(),
                flags: 0,
            },
        )
        .unwrap();
    assert!(
        xml.xml
            .starts_with("<secret ephemeral='no' private='yes'>\n  <uuid>07070707-")
    );
    let get = |f: &Fixture| {
        f.call::<_, SecretGetValueRet>(
            145,
            &SecretFlagsArgs {
                secret: secret_handle(),
                flags: 0,
            },
        )
    };
    // Private before any value, as libvirt checks.
    let e = get(&f).unwrap_err();
    assert_eq!(e.code, codes::INVALID_SECRET, "{}", e.message);
    f.call::<_, ()>(
        144,
        &SecretSetValueArgs {
            secret: secret_handle(),
            value: SecretValue(zeroize::Zeroizing::new(b"hunter2".to_vec())),
            flags: 0,
        },
    )
    .unwrap();
    let e = get(&f).unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (codes::INVALID_SECRET, "Invalid secret: secret is private")
    );
    // A public secret's value is given back.
    f.call::<_, SecretRet>(
        142,
        &SecretDefineXmlArgs {
            xml: "<secret><uuid>08080808-0808-0808-0808-080808080808</uuid></secret>".into(),
            flags: 1,
        },
    )
    .unwrap();
    let public = NonnullSecret {
        uuid: [8; 16],
        usage_type: 0,
        usage_id: String::new(),
    };
    f.call::<_, ()>(
        144,
        &SecretSetValueArgs {
            secret: public.clone(),
            value: SecretValue(zeroize::Zeroizing::new(b"open".to_vec())),
            flags: 0,
        },
    )
    .unwrap();
    let got: SecretGetValueRet = f
        .call(
            145,
            &SecretFlagsArgs {
                secret: public.clone(),
                flags: 0,
            },
        )
        .unwrap();
    assert_eq!(got.value.0.as_slice(), b"open");
    assert_eq!(format!("{:?}", got.value), "SecretValue(<4 bytes>)");
    f.call::<_, ()>(146, &SecretUndefineArgs { secret: public })
        .unwrap();
    let e = f
        .call::<_, XmlRet>(
            143,
            &SecretFlagsArgs {
                secret: NonnullSecret {
                    uuid: [8; 16],
                    usage_type: 0,
                    usage_id: String::new(),
                },
                flags: 0,
            },
        )
        .unwrap_err();
    assert_eq!(
        e.message,
        "Secret not found: no secret with matching uuid '08080808-0808-0808-0808-080808080808'"
    );
}
