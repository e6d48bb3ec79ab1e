//! `--output json`: one JSON document on stdout with the field names README documents, the
//! same numbers as the human output and as the files themselves (`st_blocks`, `st_size`,
//! qemu-img), and nothing on stdout but the document.

mod common;

use common::{TempPool, alloc_and_size, have, qemu_info};
use serde_json::Value;

fn json(pool: &TempPool, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let text = pool.ok(&all);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{args:?}: not one JSON document ({e}): {text}"))
}

#[test]
fn create_reports_the_volume_the_mode_and_the_rule() {
    let pool = TempPool::new();
    let v = json(
        &pool,
        &[
            "vol-create-as",
            "a.qcow2",
            "1G",
            "--format",
            "qcow2",
            "--allocation",
            "100M",
        ],
    );
    assert_eq!(v["volume"]["name"], "a.qcow2");
    assert_eq!(v["volume"]["format"], "qcow2");
    assert_eq!(v["volume"]["capacity"], 1u64 << 30);
    let (alloc, size) = alloc_and_size(&pool.vol("a.qcow2"));
    assert_eq!(v["volume"]["allocation"], alloc);
    assert_eq!(v["volume"]["physical"], size);
    assert_eq!(v["plan"]["preallocation"], "metadata");
    assert_eq!(v["plan"]["rule"], "qcow2-allocation-partial");
    assert_eq!(v["plan"]["reserved"], 100u64 << 20);
    assert_eq!(v["plan"]["qcow2"]["cluster_size"], 65536);
    if have("qemu-img") {
        let info = qemu_info(&pool.vol("a.qcow2"));
        assert_eq!(v["volume"]["capacity"], info["virtual-size"]);
        assert_eq!(
            v["volume"]["qcow2"]["compat"],
            info["format-specific"]["data"]["compat"]
        );
    }
    let clone = json(&pool, &["vol-clone", "a.qcow2", "b.qcow2"]);
    assert_eq!(clone["volume"]["name"], "b.qcow2");
    assert_eq!(clone["plan"]["rule"], "qcow2-from-report");
}

#[test]
fn info_list_pool_and_explain_agree_with_the_human_output() {
    let pool = TempPool::new();
    pool.ok(&["vol-create-as", "r.img", "8M", "--allocation", "2M"]);
    let info = json(&pool, &["vol-info", "r.img"]);
    let human = pool.ok(&["vol-info", "r.img", "--bytes"]);
    assert!(
        human.contains(&format!("Capacity:       {} bytes", info["capacity"])),
        "{human}"
    );
    assert!(
        human.contains(&format!("Allocation:     {} bytes", info["allocation"])),
        "{human}"
    );
    assert_eq!(info["type"], "file");
    assert_eq!(info["qcow2"], Value::Null);
    let list = json(&pool, &["vol-list"]);
    assert_eq!(list["volumes"].as_array().unwrap().len(), 1);
    assert_eq!(list["volumes"][0]["name"], "r.img");
    let p = json(&pool, &["pool-info"]);
    let human = pool.ok(&["pool-info", "--bytes"]);
    assert!(
        human.contains(&format!("Capacity:       {} bytes", p["capacity"])),
        "{human}"
    );
    assert_eq!(p["state"], "running");
    let xml = pool.write_file(
        "v.xml",
        "<volume><name>e.qcow2</name><capacity unit='G'>1</capacity><allocation unit='G'>1</allocation><target><format type='qcow2'/></target></volume>",
    );
    let plan = json(&pool, &["explain", xml.to_str().unwrap()]);
    assert_eq!(plan["preallocation"], "falloc");
    assert_eq!(plan["rule"], "qcow2-allocation-at-capacity");
    assert!(plan["expected_allocation"].as_u64().unwrap() >= 1 << 30);
    assert!(!pool.vol("e.qcow2").exists(), "explain creates nothing");
}

#[test]
fn errors_stay_one_line_on_stderr() {
    let pool = TempPool::new();
    let out = pool.qpool(&["vol-info", "nope", "--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

/// Every field name the JSON documents carry, with the object it is in.
fn field_names(v: &Value, out: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, inner) in map {
                out.insert(k.clone());
                field_names(inner, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| field_names(i, out)),
        _ => {}
    }
}

/// The field names are documented where the issue and the `--output` help say: README's
/// table and the qpool(1) page. A field added to a document without its documentation fails
/// here.
#[test]
fn every_field_is_documented_in_readme_and_the_man_page() {
    let pool = TempPool::new();
    let base = pool.scratch().join("base.qcow2");
    let mut names = std::collections::BTreeSet::new();
    for args in [
        vec!["vol-create-as", "a.qcow2", "1G", "--format", "qcow2"],
        vec!["vol-create-as", "r.img", "8M", "--allocation", "2M"],
        vec!["vol-info", "a.qcow2"],
        vec!["vol-list"],
        vec!["pool-info"],
    ] {
        field_names(&json(&pool, &args), &mut names);
    }
    let xml = pool.write_file(
        "x.xml",
        "<volume><name>x.qcow2</name><capacity>1073741824</capacity><target><format type='qcow2'/></target></volume>",
    );
    field_names(
        &json(&pool, &["explain", xml.to_str().unwrap()]),
        &mut names,
    );
    // A backing image fills the `backing` object.
    std::fs::copy(pool.vol("a.qcow2"), &base).unwrap();
    let overlay = pool.write_file(
        "overlay.xml",
        &format!(
            "<volume><name>o.qcow2</name><capacity>1073741824</capacity><target><format type='qcow2'/></target><backingStore><path>{}</path><format type='qcow2'/></backingStore></volume>",
            base.display()
        ),
    );
    field_names(
        &json(&pool, &["vol-create", overlay.to_str().unwrap()]),
        &mut names,
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let table: String = readme
        .lines()
        .skip_while(|l| !l.starts_with("| document | fields |"))
        .take_while(|l| l.starts_with('|'))
        .collect();
    let man = std::fs::read_to_string(root.join("packaging/manpages.rs")).unwrap();
    let man = &man[man.find("\"JSON OUTPUT\"").expect("a JSON OUTPUT section")..];
    assert!(names.len() > 20, "{names:?}");
    for name in &names {
        assert!(
            table.contains(&format!("`{name}`")),
            "README's JSON table lacks `{name}`"
        );
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        assert!(
            man.split(|c: char| !word(c)).any(|w| w == name),
            "qpool(1)'s JSON OUTPUT section lacks {name}"
        );
    }
}
