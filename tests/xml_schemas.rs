//! XML in and out: qpool's own schemas (`xml-schemas/`), the examples (`examples/`), and the
//! XML qpool prints checked against libvirt's schemas and fed back to qpool.
//!
//! - every example validates against `xml-schemas/volume.rng` or `pool.rng`;
//! - the schema and qpool refuse the same documents (a table of one-defect documents);
//! - every volume example is accepted by `qpool explain`, which prints the preallocation and
//!   rule its file name names (table-driven);
//! - fixtures `tests/data/vol-in/X.xml` → `vol-create` → `vol-dumpxml` equal
//!   `tests/data/vol-out/X.xml` once run-dependent values are masked (libvirt's xml2xml idea);
//! - `vol-dumpxml` and `pool-dumpxml` validate against libvirt's installed schemas;
//! - `vol-dumpxml` fed back to `vol-create` under a new name gives an equivalent volume.

mod common;

use std::path::{Path, PathBuf};

use common::{
    LIBVIRT_STORAGEPOOL_RNG, LIBVIRT_STORAGEVOL_RNG, TempPool, assert_check_clean, have,
    have_libvirt_schemas, qemu_compare, qemu_info, xmllint_relaxng,
};

/// The repository root.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn volume_rng() -> PathBuf {
    repo().join("xml-schemas/volume.rng")
}

fn pool_rng() -> PathBuf {
    repo().join("xml-schemas/pool.rng")
}

/// `*.xml` files of a directory, sorted by name.
fn xml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Pool examples are named `pool-*.xml`; every other example is a volume.
fn is_pool_example(path: &Path) -> bool {
    file_name(path).starts_with("pool-")
}

fn volume_examples() -> Vec<PathBuf> {
    xml_files(&repo().join("examples"))
        .into_iter()
        .filter(|p| !is_pool_example(p))
        .collect()
}

fn pool_examples() -> Vec<PathBuf> {
    xml_files(&repo().join("examples"))
        .into_iter()
        .filter(|p| is_pool_example(p))
        .collect()
}

/// The line of `explain` output that starts with `label`, without the label.
fn explain_field<'a>(out: &'a str, label: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim_start)
}

/// Creates `base.qcow2` (8 GiB, thin), the backing store the overlay examples name.
fn create_base(pool: &TempPool) {
    pool.ok(&["vol-create-as", "base.qcow2", "8G", "--format", "qcow2"]);
}

// ---------------------------------------------------------------------------------------
// Schemas and examples
// ---------------------------------------------------------------------------------------

#[test]
fn schemas_include_nothing_from_outside_the_repo() {
    for schema in [volume_rng(), pool_rng()] {
        let text = std::fs::read_to_string(&schema).expect("read schema");
        for pattern in ["<include", "<externalRef", "href="] {
            assert!(
                !text.contains(pattern),
                "{} contains {pattern}: the schemas must be self-contained",
                schema.display()
            );
        }
    }
}

#[test]
fn examples_directory_has_volume_and_pool_examples() {
    // One per row of the policy table (4 qcow2 allocation rows, 4 qcow2 explicit modes,
    // 4 raw allocation rows, 3 raw explicit modes), two overlays, two option sets.
    assert!(volume_examples().len() >= 19, "{:?}", volume_examples());
    assert!(!pool_examples().is_empty());
}

#[test]
fn volume_examples_validate_against_volume_rng() {
    if !have("xmllint") {
        return;
    }
    for example in volume_examples() {
        let (ok, stderr) = xmllint_relaxng(&volume_rng(), &example);
        assert!(ok, "{}: {stderr}", file_name(&example));
    }
}

#[test]
fn pool_examples_validate_against_pool_rng_and_libvirts_schema() {
    if !have("xmllint") || !have_libvirt_schemas() {
        return;
    }
    for example in pool_examples() {
        let (ok, stderr) = xmllint_relaxng(&pool_rng(), &example);
        assert!(ok, "{} against pool.rng: {stderr}", file_name(&example));
        let (ok, stderr) = xmllint_relaxng(Path::new(LIBVIRT_STORAGEPOOL_RNG), &example);
        assert!(ok, "{} against libvirt: {stderr}", file_name(&example));
    }
}

#[test]
fn pool_examples_are_accepted_by_the_pool_parser() {
    for example in pool_examples() {
        let text = std::fs::read_to_string(&example).unwrap();
        let def = qpool::xml::PoolDef::parse(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file_name(&example)));
        assert!(def.target_path.starts_with('/'), "{}", file_name(&example));
    }
}

/// Examples that use nothing but libvirt's vocabulary validate against libvirt's own schema:
/// they are plain libvirt XML. (Those using the qpool namespace or a pool-relative backing
/// path are qpool-only.)
#[test]
fn plain_libvirt_examples_validate_against_libvirts_storagevol_rng() {
    if !have("xmllint") || !have_libvirt_schemas() {
        return;
    }
    let mut checked = 0;
    for example in volume_examples() {
        let text = std::fs::read_to_string(&example).unwrap();
        if text.contains("urn:qpool:volume:1") || text.contains("<backingStore>") {
            continue;
        }
        let (ok, stderr) = xmllint_relaxng(Path::new(LIBVIRT_STORAGEVOL_RNG), &example);
        assert!(ok, "{}: {stderr}", file_name(&example));
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} plain examples");
}

/// What `qpool explain` must print for each example: the file name says the row of the
/// policy table (src/policy/mod.rs), the table says the mode and the rule.
const EXPLAIN_TABLE: &[(&str, &str, &str)] = &[
    // (example, Preallocation, Rule)
    (
        "qcow2-allocation-absent.xml",
        "off",
        "qcow2 without <allocation>: the pool default, off",
    ),
    (
        "qcow2-allocation-zero.xml",
        "off",
        "qcow2 with allocation 0: off (thin)",
    ),
    (
        "qcow2-allocation-partial.xml",
        "metadata",
        "qcow2 with 0 < allocation 2147483648 < capacity: metadata, and the first 2147483648 bytes of guest data reserved with fallocate",
    ),
    (
        "qcow2-allocation-at-capacity.xml",
        "falloc",
        "qcow2 with allocation 10737418240 at or above capacity: falloc",
    ),
    (
        "qcow2-explicit-off.xml",
        "off",
        "<qpool:preallocation mode='off'/> asks for this mode exactly",
    ),
    (
        "qcow2-explicit-metadata.xml",
        "metadata",
        "<qpool:preallocation mode='metadata'/> asks for this mode exactly",
    ),
    (
        "qcow2-explicit-falloc.xml",
        "falloc",
        "<qpool:preallocation mode='falloc'/> asks for this mode exactly",
    ),
    (
        "qcow2-explicit-full.xml",
        "full",
        "<qpool:preallocation mode='full'/> asks for this mode exactly",
    ),
    (
        "raw-allocation-absent.xml",
        "falloc",
        "raw without <allocation> (libvirt reads it as = capacity): fully allocated with fallocate",
    ),
    (
        "raw-allocation-zero.xml",
        "off",
        "raw with allocation 0: sparse file",
    ),
    (
        "raw-allocation-partial.xml",
        "off",
        "raw with 0 < allocation 1073741824 < capacity: the first 1073741824 bytes fallocated, the rest sparse",
    ),
    (
        "raw-allocation-at-capacity.xml",
        "falloc",
        "raw with allocation 2147483648 at or above capacity: the whole file fallocated",
    ),
    (
        "raw-explicit-off.xml",
        "off",
        "<qpool:preallocation mode='off'/> asks for this mode exactly",
    ),
    (
        "raw-explicit-falloc.xml",
        "falloc",
        "<qpool:preallocation mode='falloc'/> asks for this mode exactly",
    ),
    (
        "raw-explicit-full.xml",
        "full",
        "<qpool:preallocation mode='full'/> asks for this mode exactly",
    ),
    (
        "qcow2-overlay.xml",
        "off",
        "overlay without extended_l2: off (qemu allows preallocation with a backing file only with extended_l2)",
    ),
    (
        "qcow2-overlay-extended-l2-partial.xml",
        "metadata",
        "qcow2 with 0 < allocation 536870912 < capacity: metadata, and the first 536870912 bytes of guest data reserved with fallocate",
    ),
    (
        "qcow2-compat-cluster-features-refcount.xml",
        "off",
        "qcow2 without <allocation>: the pool default, off",
    ),
    (
        "qcow2-compat-0.10.xml",
        "off",
        "qcow2 without <allocation>: the pool default, off",
    ),
    (
        "qcow2-encrypted-luks.xml",
        "off",
        "qcow2 without <allocation>: the pool default, off",
    ),
    (
        "raw-encrypted-luks.xml",
        "off",
        "raw with allocation 0: sparse file",
    ),
];

#[test]
fn every_volume_example_is_in_the_explain_table_and_back() {
    let on_disk: Vec<String> = volume_examples().iter().map(|p| file_name(p)).collect();
    for name in &on_disk {
        assert!(
            EXPLAIN_TABLE.iter().any(|(n, _, _)| n == name),
            "examples/{name} has no row in EXPLAIN_TABLE"
        );
    }
    for (name, _, _) in EXPLAIN_TABLE {
        assert!(
            on_disk.iter().any(|n| n == name),
            "EXPLAIN_TABLE names examples/{name}, which does not exist"
        );
    }
}

#[test]
fn volume_examples_explain_the_mode_and_rule_of_their_row() {
    let pool = TempPool::new();
    create_base(&pool);
    let before = pool.listing();
    for (name, mode, rule) in EXPLAIN_TABLE {
        let path = repo().join("examples").join(name);
        let out = pool.ok(&["explain", path.to_str().unwrap()]);
        assert_eq!(
            explain_field(&out, "Preallocation:"),
            Some(*mode),
            "{name}:\n{out}"
        );
        assert_eq!(explain_field(&out, "Rule:"), Some(*rule), "{name}:\n{out}");
        // The format in the file name is the format explain reports.
        let format = explain_field(&out, "Format:").unwrap_or("");
        let expected_format = name.split('-').next().unwrap();
        assert!(
            format.starts_with(expected_format),
            "{name}: Format {format}"
        );
    }
    assert_eq!(pool.listing(), before, "explain created something");
}

/// The flag rows of the table need `--prealloc-metadata`; they reuse two examples.
#[test]
fn examples_with_prealloc_metadata_flag_follow_libvirts_rule() {
    let pool = TempPool::new();
    let cases: &[(&str, &str, &str)] = &[
        (
            "qcow2-allocation-partial.xml",
            "metadata",
            "--prealloc-metadata with allocation 2147483648 below capacity: metadata (libvirt's rule)",
        ),
        (
            "qcow2-allocation-absent.xml",
            "falloc",
            "--prealloc-metadata without <allocation> (libvirt reads it as = capacity): falloc (libvirt's rule)",
        ),
        (
            "qcow2-allocation-at-capacity.xml",
            "falloc",
            "--prealloc-metadata with allocation 10737418240 at or above capacity: falloc (libvirt's rule)",
        ),
        (
            "qcow2-explicit-off.xml",
            "off",
            "<qpool:preallocation mode='off'/> asks for this mode exactly",
        ),
    ];
    for (name, mode, rule) in cases {
        let path = repo().join("examples").join(name);
        let out = pool.ok(&["explain", path.to_str().unwrap(), "--prealloc-metadata"]);
        assert_eq!(
            explain_field(&out, "Preallocation:"),
            Some(*mode),
            "{name}:\n{out}"
        );
        assert_eq!(explain_field(&out, "Rule:"), Some(*rule), "{name}:\n{out}");
    }
}

/// One-defect documents: the schema refuses each, and so does qpool (with this text in its
/// error). Guards against a schema that is looser than qpool.
const SCHEMA_REFUSALS: &[(&str, &str, &str)] = &[
    (
        "format-vmdk",
        "<volume><name>v</name><capacity>1</capacity><target><format type='vmdk'/></target></volume>",
        "unsupported volume format 'vmdk' (qpool supports: raw, qcow2)",
    ),
    (
        "format-without-type",
        "<volume><name>v</name><capacity>1</capacity><target><format/></target></volume>",
        "/volume/target/format: missing attribute 'type'",
    ),
    (
        "compat-2.0",
        "<volume><name>v</name><capacity>1</capacity><target><compat>2.0</compat></target></volume>",
        "unsupported compat level '2.0'",
    ),
    (
        "unknown-extension-element",
        "<volume xmlns:qpool='urn:qpool:volume:1'><name>v</name><capacity>1</capacity><target><qpool:prealloc mode='off'/></target></volume>",
        "unknown qpool extension element 'prealloc'",
    ),
    (
        "unknown-preallocation-mode",
        "<volume xmlns:qpool='urn:qpool:volume:1'><name>v</name><capacity>1</capacity><target><qpool:preallocation mode='lots'/></target></volume>",
        "unknown preallocation mode 'lots'",
    ),
    (
        "preallocation-without-mode",
        "<volume xmlns:qpool='urn:qpool:volume:1'><name>v</name><capacity>1</capacity><target><qpool:preallocation/></target></volume>",
        "missing attribute 'mode'",
    ),
    (
        "refcount-bits-3",
        "<volume xmlns:qpool='urn:qpool:volume:1'><name>v</name><capacity>1</capacity><target><qpool:refcount bits='3'/></target></volume>",
        "refcount bits '3' must be a power of two from 1 to 64",
    ),
    (
        "refcount-bits-128",
        "<volume xmlns:qpool='urn:qpool:volume:1'><name>v</name><capacity>1</capacity><target><qpool:refcount bits='128'/></target></volume>",
        "refcount bits '128' must be a power of two from 1 to 64",
    ),
    (
        "compression-lz4",
        "<volume xmlns:qpool='urn:qpool:volume:1'><name>v</name><capacity>1</capacity><target><qpool:compression type='lz4'/></target></volume>",
        "unknown compression type 'lz4'",
    ),
    (
        "extension-outside-target",
        "<volume xmlns:qpool='urn:qpool:volume:1'><name>v</name><capacity>1</capacity><qpool:preallocation mode='off'/></volume>",
        "qpool extension elements belong inside <target>",
    ),
    (
        "name-dot-dot",
        "<volume><name>..</name><capacity>1</capacity></volume>",
        "invalid volume name '..'",
    ),
    (
        "name-hidden",
        "<volume><name>.hidden</name><capacity>1</capacity></volume>",
        "invalid volume name '.hidden'",
    ),
    (
        "name-with-slash",
        "<volume><name>a/b</name><capacity>1</capacity></volume>",
        "invalid volume name 'a/b'",
    ),
    (
        "name-empty",
        "<volume><name></name><capacity>1</capacity></volume>",
        "invalid volume name '': the name is empty",
    ),
    (
        "name-with-tab",
        "<volume><name>a&#9;b</name><capacity>1</capacity></volume>",
        "the name contains a control character",
    ),
    (
        "name-missing",
        "<volume><capacity>1</capacity></volume>",
        "/volume: missing <name> element",
    ),
    (
        "capacity-missing-without-backing-store",
        "<volume><name>v</name><target><format type='qcow2'/></target></volume>",
        "missing <capacity> element",
    ),
    (
        "capacity-negative",
        "<volume><name>v</name><capacity>-1</capacity></volume>",
        "invalid size '-1'",
    ),
    (
        "capacity-minus-zero",
        "<volume><name>v</name><capacity>-0</capacity></volume>",
        "invalid size '-0'",
    ),
    (
        "capacity-plus-sign",
        "<volume><name>v</name><capacity>+5</capacity></volume>",
        "invalid size '+5'",
    ),
    (
        "capacity-above-64-bits",
        "<volume><name>v</name><capacity>18446744073709551616</capacity></volume>",
        "is too large",
    ),
    (
        "capacity-garbage",
        "<volume><name>v</name><capacity>12abc</capacity></volume>",
        "invalid size '12abc'",
    ),
    (
        "capacity-unknown-unit",
        "<volume><name>v</name><capacity unit='Q'>1</capacity></volume>",
        "unknown unit 'Q'",
    ),
    (
        "mode-above-0777",
        "<volume><name>v</name><capacity>1</capacity><target><permissions><mode>01777</mode></permissions></target></volume>",
        "malformed octal mode '01777'",
    ),
    (
        "mode-not-octal",
        "<volume><name>v</name><capacity>1</capacity><target><permissions><mode>0999</mode></permissions></target></volume>",
        "malformed octal mode '0999'",
    ),
    (
        "owner-by-name",
        "<volume><name>v</name><capacity>1</capacity><target><permissions><owner>root</owner></permissions></target></volume>",
        "malformed owner 'root'",
    ),
    (
        "group-minus-two",
        "<volume><name>v</name><capacity>1</capacity><target><permissions><group>-2</group></permissions></target></volume>",
        "malformed group '-2'",
    ),
    (
        "unknown-feature",
        "<volume><name>v</name><capacity>1</capacity><target><features><bogus/></features></target></volume>",
        "unsupported feature 'bogus'",
    ),
    (
        "encryption-qcow",
        "<volume><name>v</name><capacity>1</capacity><target><encryption format='qcow'/></target></volume>",
        "unsupported encryption format 'qcow' (qpool supports: luks)",
    ),
    (
        "encryption-serpent",
        "<volume><name>v</name><capacity>1</capacity><target><encryption format='luks'><secret type='passphrase' usage='u'/><cipher name='serpent' size='256' mode='xts' hash='sha256'/><ivgen name='plain64'/></encryption></target></volume>",
        "unsupported cipher 'serpent' (qpool supports: aes)",
    ),
    (
        "root-is-pool",
        "<pool type='dir'><name>v</name></pool>",
        "root element is <pool>, expected <volume>",
    ),
    (
        "unknown-volume-type",
        "<volume type='weird'><name>v</name><capacity>1</capacity></volume>",
        "unknown volume type 'weird'",
    ),
    (
        "backing-store-without-path",
        "<volume><name>v</name><target><format type='qcow2'/></target><backingStore><format type='qcow2'/></backingStore></volume>",
        "/volume/backingStore: missing <path> element",
    ),
    (
        "backing-store-format-vmdk",
        "<volume><name>v</name><target><format type='qcow2'/></target><backingStore><path>/b</path><format type='vmdk'/></backingStore></volume>",
        "unsupported volume format 'vmdk'",
    ),
];

#[test]
fn schema_and_qpool_refuse_the_same_documents() {
    if !have("xmllint") {
        return;
    }
    let pool = TempPool::new();
    for (case, doc, error) in SCHEMA_REFUSALS {
        let file = pool.write_file(&format!("{case}.xml"), doc);
        let (valid, _) = xmllint_relaxng(&volume_rng(), &file);
        assert!(
            !valid,
            "{case}: volume.rng accepts a document qpool refuses"
        );
        let out = pool.qpool(&["explain", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
        assert!(
            stderr.contains(error),
            "{case}: wanted {error:?}, got {stderr}"
        );
    }
}

/// Documents at the edge of what qpool takes: the schema accepts each and so does qpool.
#[test]
fn schema_and_qpool_accept_the_same_edge_documents() {
    if !have("xmllint") {
        return;
    }
    let long_name = "n".repeat(255);
    let cases: &[(&str, String)] = &[
        (
            "minimal-raw",
            "<volume><name>v</name><capacity>1</capacity></volume>".into(),
        ),
        (
            "name-255-bytes",
            format!("<volume><name>{long_name}</name><capacity>1</capacity></volume>"),
        ),
        (
            "units-in-any-case",
            "<volume><name>v</name><capacity unit='gib'>1</capacity><allocation unit='bytes'>0</allocation></volume>".into(),
        ),
        (
            "whitespace-around-numbers",
            "<volume><name>v</name><capacity unit='M'>\n  8\n</capacity></volume>".into(),
        ),
        (
            "owner-and-group-unset",
            "<volume><name>v</name><capacity>1</capacity><target><permissions><mode>0644</mode><owner>-1</owner><group>-1</group></permissions></target></volume>".into(),
        ),
        (
            "other-prefix-for-the-extension",
            "<volume xmlns:q='urn:qpool:volume:1'><name>v</name><capacity>1</capacity><target><format type='qcow2'/><q:refcount bits='1'/></target></volume>".into(),
        ),
        (
            "overlay-without-capacity",
            "<volume><name>v</name><target><format type='qcow2'/></target><backingStore><path>base.qcow2</path></backingStore></volume>".into(),
        ),
        (
            "nocow",
            "<volume><name>v</name><capacity>1</capacity><target><nocow/></target></volume>".into(),
        ),
    ];
    let pool = TempPool::new();
    create_base(&pool);
    for (case, doc) in cases {
        let file = pool.write_file(&format!("{case}.xml"), doc);
        let (valid, stderr) = xmllint_relaxng(&volume_rng(), &file);
        assert!(valid, "{case}: volume.rng refuses it: {stderr}");
        let out = pool.qpool(&["explain", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{case}: qpool refuses it: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Output XML: fixtures, libvirt's schemas, round trip
// ---------------------------------------------------------------------------------------

/// Commands to run before creating a fixture (in the same pool).
fn fixture_setup(case: &str) -> &'static [&'static [&'static str]] {
    match case {
        "overlay" => &[&["vol-create-as", "base.qcow2", "64M", "--format", "qcow2"]],
        _ => &[],
    }
}

/// The `<name>` of a volume document.
fn volume_name(xml: &str) -> String {
    let start = xml.find("<name>").expect("<name>") + "<name>".len();
    let end = xml[start..].find("</name>").expect("</name>") + start;
    xml[start..end].to_string()
}

/// Replaces the text of every `<tag …>TEXT</tag>` on a line of its own with `placeholder`.
fn mask_element(xml: &str, tag: &str, placeholder: &str) -> String {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    xml.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            match (
                trimmed.starts_with(&open),
                line.find('>'),
                line.find(&close),
            ) {
                (true, Some(gt), Some(end)) if gt < end => {
                    format!("{}{placeholder}{}", &line[..=gt], &line[end..])
                }
                _ => line.to_string(),
            }
        })
        .map(|l| l + "\n")
        .collect()
}

/// Masks what changes from run to run in `vol-dumpxml`: the pool directory, the times and
/// the allocation (filesystem-dependent). Owner and group become placeholders only when they
/// are the test's own uid and gid, so a wrong owner still shows.
fn mask_dumpxml(xml: &str, pool_dir: &Path) -> String {
    let mut out = xml.replace(pool_dir.to_str().unwrap(), "@POOL@");
    for tag in ["atime", "mtime", "ctime"] {
        out = mask_element(&out, tag, "@TIME@");
    }
    out = mask_element(&out, "allocation", "@ALLOCATION@");
    let uid = nix::unistd::geteuid();
    let gid = nix::unistd::getegid();
    out = out.replace(&format!("<owner>{uid}</owner>"), "<owner>@UID@</owner>");
    out.replace(&format!("<group>{gid}</group>"), "<group>@GID@</group>")
}

/// Creates one `vol-in` fixture in `pool`; returns the volume name and its `vol-dumpxml`.
fn create_fixture(pool: &TempPool, input: &Path) -> (String, String) {
    let case = input.file_stem().unwrap().to_str().unwrap();
    for args in fixture_setup(case) {
        pool.ok(args);
    }
    let name = volume_name(&std::fs::read_to_string(input).unwrap());
    let out = pool.ok(&["vol-create", input.to_str().unwrap()]);
    assert_eq!(
        out,
        format!("Vol {name} created from {}\n\n", input.display()),
        "{case}"
    );
    let xml = pool.ok(&["vol-dumpxml", &name]);
    // virsh ends every command's output with an empty line; the document is what precedes it.
    let xml = xml
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("{case}: no empty line after the document"))
        .to_string();
    (name, xml)
}

fn fixtures() -> Vec<PathBuf> {
    xml_files(&repo().join("tests/data/vol-in"))
}

#[test]
fn vol_in_fixtures_dump_as_vol_out_after_masking() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 8, "{fixtures:?}");
    for input in fixtures {
        let case = file_name(&input);
        let expected_path = repo().join("tests/data/vol-out").join(&case);
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{case}: no vol-out file: {e}"));
        let pool = TempPool::new();
        let (_, xml) = create_fixture(&pool, &input);
        let canonical = std::fs::canonicalize(pool.path()).unwrap();
        let masked = mask_dumpxml(&xml, &canonical);
        assert_eq!(masked, expected, "{case}: vol-dumpxml differs from vol-out");
    }
}

#[test]
fn vol_out_fixtures_have_a_vol_in_twin() {
    for output in xml_files(&repo().join("tests/data/vol-out")) {
        let twin = repo().join("tests/data/vol-in").join(file_name(&output));
        assert!(twin.exists(), "{} has no vol-in file", file_name(&output));
    }
}

#[test]
fn vol_dumpxml_validates_against_libvirts_and_qpools_volume_schema() {
    if !have("xmllint") || !have_libvirt_schemas() {
        return;
    }
    for input in fixtures() {
        let case = file_name(&input);
        let pool = TempPool::new();
        let (name, xml) = create_fixture(&pool, &input);
        let dumped = pool.write_file(&format!("dump-{name}.xml"), &xml);
        let (ok, stderr) = xmllint_relaxng(Path::new(LIBVIRT_STORAGEVOL_RNG), &dumped);
        assert!(ok, "{case}: libvirt's storagevol.rng: {stderr}\n{xml}");
        let (ok, stderr) = xmllint_relaxng(&volume_rng(), &dumped);
        assert!(ok, "{case}: qpool's volume.rng: {stderr}\n{xml}");
    }
}

#[test]
fn pool_dumpxml_validates_against_libvirts_and_qpools_pool_schema() {
    if !have("xmllint") || !have_libvirt_schemas() {
        return;
    }
    let pool = TempPool::new();
    let xml = pool.ok(&["pool-dumpxml"]);
    let xml = xml
        .strip_suffix('\n')
        .expect("empty line after the document");
    let dumped = pool.write_file("pool-dump.xml", xml);
    let (ok, stderr) = xmllint_relaxng(Path::new(LIBVIRT_STORAGEPOOL_RNG), &dumped);
    assert!(ok, "libvirt's storagepool.rng: {stderr}\n{xml}");
    let (ok, stderr) = xmllint_relaxng(&pool_rng(), &dumped);
    assert!(ok, "qpool's pool.rng: {stderr}\n{xml}");
}

#[test]
fn pool_dumpxml_is_accepted_by_the_pool_parser_with_the_same_name_and_path() {
    let pool = TempPool::new();
    let xml = pool.ok(&["pool-dumpxml"]);
    let def = qpool::xml::PoolDef::parse(&xml).expect("pool-dumpxml parses");
    let canonical = std::fs::canonicalize(pool.path()).unwrap();
    assert_eq!(def.target_path, canonical.to_str().unwrap());
    assert_eq!(def.name, "pool");
    assert!(def.uuid.is_some());
}

/// The `qemu-img info` fields that make two volumes equivalent. Refcount width and
/// compression type are left out: libvirt's volume XML has no element for them, so
/// `vol-dumpxml` cannot carry them (a `qpool:` element there would fail libvirt's schema).
fn equivalence_fields(info: &serde_json::Value) -> serde_json::Value {
    let data = &info["format-specific"]["data"];
    serde_json::json!({
        "format": info["format"],
        "virtual-size": info["virtual-size"],
        "cluster-size": info["cluster-size"],
        "compat": data["compat"],
        "lazy-refcounts": data["lazy-refcounts"],
        "extended-l2": data["extended-l2"],
        "full-backing-filename": info["full-backing-filename"],
        "backing-filename-format": info["backing-filename-format"],
    })
}

#[test]
fn vol_dumpxml_fed_back_to_vol_create_gives_an_equivalent_volume() {
    if !have("qemu-img") {
        return;
    }
    for input in fixtures() {
        let case = file_name(&input);
        let pool = TempPool::new();
        let (name, xml) = create_fixture(&pool, &input);
        let copy = format!("copy-{name}");
        let edited = xml.replace(
            &format!("<name>{name}</name>"),
            &format!("<name>{copy}</name>"),
        );
        assert_ne!(edited, xml, "{case}: name not replaced");
        let file = pool.write_file("copy.xml", &edited);
        pool.ok(&["vol-create", file.to_str().unwrap()]);

        let original = qemu_info(&pool.vol(&name));
        let cloned = qemu_info(&pool.vol(&copy));
        assert_eq!(
            equivalence_fields(&cloned),
            equivalence_fields(&original),
            "{case}: qemu-img info differs"
        );
        if original["format"] == "qcow2" {
            assert_check_clean(&pool.vol(&copy));
        }
        // Strict compare: same content and same allocation state (a dumped thin qcow2
        // stays thin, a fallocated one is fallocated again).
        assert!(
            qemu_compare(&pool.vol(&name), &pool.vol(&copy), true),
            "{case}: qemu-img compare -s finds a difference"
        );
        // And qpool reports the same capacity, format and qcow2 details for both.
        let dump_copy = pool.ok(&["vol-dumpxml", &copy]);
        let reported = |xml: &str| -> Vec<String> {
            let wanted = [
                "<capacity",
                "<format",
                "<compat",
                "<clusterSize",
                "<features",
                "<lazy_refcounts",
                "<extended_l2",
            ];
            xml.lines()
                .filter(|l| wanted.iter().any(|t| l.trim_start().starts_with(t)))
                .map(String::from)
                .collect()
        };
        assert_eq!(reported(&dump_copy), reported(&xml), "{case}");
    }
}
