//! What the progress bar costs: a `full` 2 GiB raw create (zeros written, the longest
//! plain write qpool does) with a bar that really draws (into a terminal-like sink at
//! indicatif's refresh rate) against the same create without one, alternating, with `sync`
//! before every run; medians of `QPOOL_BENCH_RUNS` runs each (default 11). The target is an
//! overhead under 1 %; the report says whether it was reached.
//!
//! `cargo bench --bench progress`. Without `--bench` (as under `cargo test --all-targets`)
//! the binary does nothing. `QPOOL_BENCH_DIR` picks the directory; the default is `/dev/shm`
//! (tmpfs) where it exists, else Cargo's target dir. On tmpfs the create is pure CPU and
//! memory, so the bar's share of the time is the largest it can be and the run-to-run noise
//! the smallest; on a disk the device's own variation (several per cent here) is larger than
//! what is measured.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressDrawTarget, TermLike};
use qpool::Pool;
use qpool::cli::progress::Bar;
use qpool::policy::CreateFlags;
use qpool::xml::VolumeDef;

const SIZE: &str = "2147483648";

/// A terminal that swallows what is drawn, so the drawing itself is still paid for.
#[derive(Debug)]
struct Sink;

impl TermLike for Sink {
    fn width(&self) -> u16 {
        120
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        std::hint::black_box(s);
        Ok(())
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        std::hint::black_box(s);
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

fn sync() {
    let _ = std::process::Command::new("sync").status();
}

fn create(dir: &Path, with_bar: bool) -> Duration {
    let mut pool = Pool::open(dir, "bench").expect("pool");
    if with_bar {
        pool.set_progress(Box::new(Bar::drawing_to(Box::new(|| {
            ProgressDrawTarget::term_like(Box::new(Sink))
        }))));
    }
    let def = VolumeDef::parse(&format!(
        "<volume><name>v.img</name><capacity>{SIZE}</capacity><target><preallocation xmlns='urn:qpool:volume:1' mode='full'/></target></volume>"
    ))
    .expect("xml");
    let _ = std::fs::remove_file(dir.join("v.img"));
    sync();
    let start = Instant::now();
    pool.create_volume(&def, CreateFlags::default(), None)
        .expect("create");
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    let runs: usize = std::env::var("QPOOL_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11)
        .max(3);
    let base = std::env::var("QPOOL_BENCH_DIR").unwrap_or_else(|_| {
        if Path::new("/dev/shm").is_dir() {
            "/dev/shm".into()
        } else {
            env!("CARGO_TARGET_TMPDIR").into()
        }
    });
    let dir = tempfile::tempdir_in(&base).expect("bench directory");
    create(dir.path(), true);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        without.push(create(dir.path(), false));
        with.push(create(dir.path(), true));
    }
    let (w, wo) = (median(with), median(without));
    let overhead = (w.as_secs_f64() / wo.as_secs_f64() - 1.0) * 100.0;
    println!("| case | without a bar | with a bar | overhead | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| `full` 2 GiB raw create in {base}, medians of {runs} | {:.3} s | {:.3} s | {overhead:+.2} % | < 1 % {} |",
        wo.as_secs_f64(),
        w.as_secs_f64(),
        if overhead < 1.0 { "✔" } else { "✘" }
    );
    ExitCode::SUCCESS
}
