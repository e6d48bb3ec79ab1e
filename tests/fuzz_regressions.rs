//! Every input the fuzzers ever crashed on, replayed in the normal suite: each file in
//! `fuzz/regressions/TARGET/` goes through the same harness function as `cargo fuzz run
//! TARGET`, and so does every seed in `fuzz/seeds/TARGET/`. A new finding is added by
//! copying the crash artifact there under a name that says what it was.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::Path;

fn replay(dir: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(dir);
    let mut replayed = 0;
    for (target, run) in harness::TARGETS {
        let Ok(entries) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).expect("read input");
            eprintln!("{target}: {}", file.display());
            run(&data);
            replayed += 1;
        }
    }
    replayed
}

#[test]
fn saved_fuzz_findings_stay_fixed() {
    replay("regressions");
}

#[test]
fn every_seed_passes_its_harness() {
    let n = replay("seeds");
    assert!(
        n >= harness::TARGETS.len(),
        "each target has seeds ({n} inputs)"
    );
}
