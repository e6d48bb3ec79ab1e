//! Whole-process benchmark of `qpool` against `qemu-img` (and `dd`) on this machine.
//!
//! `cargo bench --bench create` runs every case; `cargo bench --bench create -- metadata full`
//! runs the cases whose name contains one of the words. Each case alternates its contenders
//! (qpool, qemu-img, qpool, qemu-img, …), deletes the previous image and runs `sync` before
//! every timed run, and reports the median wall time of the runs (std::time::Instant around
//! the whole process). Before timing, every contender runs once untimed; that qpool image is
//! checked with `qemu-img check`, so a broken image is never timed.
//!
//! The encrypted cases (`luks-metadata-1G`, `luks-falloc-1G`) create qcow2 with LUKS, the
//! passphrase from a file for both (`--secret-file`, `--object secret,file=…`), PBKDF2
//! calibrated to the same iteration time ([`LUKS_ITER_TIME_MS`]) by each: their time is
//! mostly the key derivation the admin asks for, so they are for information. qpool's image
//! is checked with `qemu-img check` through the secret before anything is timed.
//!
//! The copy cases (`clone-4G-1G`, `download-4G-1G`) time each run as "command + `sync`":
//! qpool flushes what it wrote before it exits, qemu-img convert and dd do not, so the flush is
//! timed for everyone. The command's own time (start to exit) is reported beside it.
//!
//! Environment:
//! - `QPOOL_BENCH_DIR`: where to work (default: a directory under Cargo's target dir). The
//!   bench works in a fresh `qpool-bench-PID` subdirectory and removes it at the end.
//! - `QPOOL_BENCH_RUNS`: timed runs per contender (default 3, at least 3).
//!
//! - `QPOOL_BENCH_CHART`: where to write the SVG chart of the four create modes (default
//!   `benches/create.svg`, the picture README shows). It is written when all four mode cases
//!   (`off-1T`, `metadata-1T`, `falloc-8G`, `full-4G`) ran, or to this path whenever it is set.
//!
//! Progress goes to stderr; the markdown report goes to stdout. Without `--bench` on the
//! command line (as under `cargo test --all-targets`) the binary does nothing.

use std::ffi::{CString, OsString};
use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

mod chart;

const QPOOL: &str = env!("CARGO_BIN_EXE_qpool");
const DEFAULT_BASE: &str = env!("CARGO_TARGET_TMPDIR");

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// Volumes in the `vol-list` pool.
const LIST_VOLUMES: usize = 10_000;
/// Capacity of the qcow2 and raw volumes in the `vol-list` pool.
const LIST_QCOW2_CAPACITY: u64 = 10 * GIB;
const LIST_RAW_CAPACITY: u64 = GIB;

/// The source volume of the copy cases (`clone-4G-1G`, `download-4G-1G`): a qcow2 volume of
/// `SOURCE_CAPACITY` holding `SOURCE_EXTENTS` extents of non-zero data, one at the start of
/// every `SOURCE_CAPACITY / SOURCE_EXTENTS`, `SOURCE_DATA` bytes in all.
const SOURCE_NAME: &str = "src.qcow2";
const SOURCE_CAPACITY: u64 = 4 * GIB;
const SOURCE_EXTENTS: u64 = 8;
const SOURCE_EXTENT_LEN: u64 = 128 * MIB;
const SOURCE_DATA: u64 = SOURCE_EXTENTS * SOURCE_EXTENT_LEN;

/// Free space kept in reserve beyond the largest image of the selected cases.
const SPACE_MARGIN: u64 = 2 * GIB;

/// What a case is measured against.
#[derive(Clone, Copy)]
enum Target {
    /// baseline median ÷ qpool median must be at least this.
    Speedup(f64),
    /// The qpool median must be below this.
    Under(Duration),
    /// Informational only.
    None,
}

impl Target {
    fn describe(self, baseline: &str) -> String {
        match self {
            Target::Speedup(x) if baseline.starts_with("dd") => {
                format!("≥ {x}× the better dd's bandwidth")
            }
            Target::Speedup(1.0) => format!("≥ 1× (no slower than {baseline})"),
            Target::Speedup(x) => format!("≥ {x}× faster than {baseline}"),
            Target::Under(d) => format!("< {}", fmt_dur(d)),
            Target::None => "— (information)".into(),
        }
    }
}

/// One contender of a case: a command run as a whole process, and the file it makes.
struct Contender {
    name: &'static str,
    program: OsString,
    args: Vec<OsString>,
    /// The image the command creates (deleted before every run); `None` for vol-list.
    output: Option<PathBuf>,
}

impl Contender {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .env_remove("QPOOL_LOG")
            .env_remove("RUST_LOG")
            .env_remove("QPOOL_POOL_DIR")
            .env_remove("QPOOL_NO_FALLOCATE");
        cmd
    }

    fn display(&self) -> String {
        let mut s = Path::new(&self.program)
            .file_name()
            .unwrap_or(self.program.as_os_str())
            .to_string_lossy()
            .into_owned();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }
}

/// Timed runs of one contender, in run order.
struct Runs {
    name: String,
    times: Vec<Duration>,
}

impl Runs {
    fn median(&self) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        let n = t.len();
        if n % 2 == 1 {
            t[n / 2]
        } else {
            (t[n / 2 - 1] + t[n / 2]) / 2
        }
    }
}

/// A row of the summary table.
struct Row {
    case: String,
    qpool: Duration,
    baseline: Option<(&'static str, Duration)>,
    target: Target,
    /// Bytes of guest data written, to print a bandwidth.
    data_bytes: Option<u64>,
}

/// Everything one case produced.
struct CaseReport {
    name: &'static str,
    title: String,
    rows: Vec<Row>,
    runs: Vec<Runs>,
    notes: Vec<String>,
}

struct Ctx {
    root: PathBuf,
    pool: PathBuf,
    /// `QPOOL_BENCH_RUNS`, overriding every case's default.
    runs: Option<usize>,
}

impl Ctx {
    fn runs(&self, default: usize) -> usize {
        self.runs.unwrap_or(default)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        eprintln!(
            "create bench: not run as a benchmark (no --bench); use `cargo bench --bench create`"
        );
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    match run(&filters) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("create bench: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// A case's name, the most disk space it holds at once (for the space check), and its body.
type CaseFn = fn(&Ctx) -> Result<CaseReport, String>;

const CASES: &[(&str, u64, CaseFn)] = &[
    ("metadata-1T", 200 * MIB, case_metadata),
    ("falloc-8G", 8 * GIB + 8 * MIB, case_falloc),
    ("off-1T", MIB, case_off),
    ("luks-metadata-1G", 2 * GIB, case_luks_metadata),
    ("luks-falloc-1G", 2 * GIB, case_luks_falloc),
    ("full-4G", 4 * GIB + 8 * MIB, case_full),
    ("vol-list-10k", 512 * MIB, case_vol_list),
    // The source (1 GiB of data plus metadata) and both contenders' copies.
    ("clone-4G-1G", 3 * SOURCE_DATA + 64 * MIB, case_clone),
    ("download-4G-1G", 3 * SOURCE_DATA + 64 * MIB, case_download),
];

/// Runs the selected cases and prints the report; `Ok(false)` when something in qpool failed.
fn run(filters: &[&str]) -> Result<bool, String> {
    let started = Instant::now();
    let selected: Vec<_> = CASES
        .iter()
        .filter(|(name, _, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f)))
        .collect();
    if selected.is_empty() {
        let names: Vec<_> = CASES.iter().map(|c| c.0).collect();
        return Err(format!(
            "no case matches {filters:?}; cases: {}",
            names.join(", ")
        ));
    }
    let runs = match std::env::var("QPOOL_BENCH_RUNS") {
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&n| n >= 3)
            .map(Some)
            .ok_or_else(|| format!("QPOOL_BENCH_RUNS={v}: expected a number ≥ 3"))?,
        Err(_) => None,
    };
    for tool in ["qemu-img", "dd", "sync"] {
        which(tool)?;
    }

    let (base, is_default) = match std::env::var_os("QPOOL_BENCH_DIR") {
        Some(d) if !d.is_empty() => (PathBuf::from(d), false),
        _ => (PathBuf::from(DEFAULT_BASE), true),
    };
    std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    if is_default {
        remove_stale_dirs(&base);
    }
    let fs = filesystem_of(&base);
    if fs.fstype == "tmpfs" || fs.fstype == "ramfs" {
        eprintln!(
            "warning: {} is on {}; timings will not reflect a disk (set QPOOL_BENCH_DIR)",
            base.display(),
            fs.fstype
        );
    }
    let need = selected.iter().map(|c| c.1).max().unwrap_or(0) + SPACE_MARGIN;
    let (avail, inodes) = free_space(&base)?;
    if avail < need {
        return Err(format!(
            "{} has {} free; the selected cases need {} (set QPOOL_BENCH_DIR elsewhere)",
            base.display(),
            fmt_bytes(avail),
            fmt_bytes(need)
        ));
    }
    if selected.iter().any(|c| c.0.starts_with("vol-list")) && inodes < LIST_VOLUMES as u64 + 1000 {
        return Err(format!(
            "{} has only {inodes} free inodes; vol-list needs {}",
            base.display(),
            LIST_VOLUMES + 1000
        ));
    }

    let root = base.join(format!("qpool-bench-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(root.clone());
    let pool = root.join("pool");
    std::fs::create_dir_all(&pool).map_err(|e| format!("{}: {e}", pool.display()))?;
    let ctx = Ctx {
        root: root.clone(),
        pool,
        runs,
    };
    let machine = machine_info(&root, &fs, avail);
    eprintln!(
        "create bench: {} case(s), in {}",
        selected.len(),
        root.display()
    );

    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for (name, _, body) in selected {
        eprintln!("== {name}");
        let case_started = Instant::now();
        match body(&ctx) {
            Ok(r) => {
                eprintln!("   done in {}", fmt_dur(case_started.elapsed()));
                reports.push(r);
            }
            Err(e) => {
                eprintln!("   FAILED: {e}");
                failures.push((*name, e));
            }
        }
        clear_dir(&ctx.pool);
    }
    drop(_cleanup);
    if let Err(e) = draw_chart(&reports, &fs) {
        eprintln!("create bench: chart: {e}");
        failures.push(("chart", e));
    }
    let total = started.elapsed();
    let report = render(&machine, &reports, &failures, total, load_average());
    // Paths inside the bench directory are shown relative to it, so the report pastes well.
    print!(
        "{}",
        report.replace(&format!("{}/", root.display()), "$DIR/")
    );
    Ok(failures.is_empty())
}

/// The create modes the chart shows, in its order.
const CHART_CASES: [&str; 4] = ["off-1T", "metadata-1T", "falloc-8G", "full-4G"];

/// Writes the chart of the create modes that ran (see the module doc for when and where).
fn draw_chart(reports: &[CaseReport], fs: &FsInfo) -> Result<(), String> {
    let explicit = std::env::var_os("QPOOL_BENCH_CHART").filter(|p| !p.is_empty());
    let bars: Vec<chart::Bar> = CHART_CASES
        .iter()
        .filter_map(|name| reports.iter().find(|r| r.name == *name))
        .map(|r| chart::Bar {
            label: r
                .title
                .trim_start_matches("qcow2 preallocation=")
                .to_string(),
            qpool: r.runs[0].median(),
            qemu_img: r.runs[1].median(),
        })
        .collect();
    let path = match explicit {
        Some(p) => PathBuf::from(p),
        None if bars.len() == CHART_CASES.len() => {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/create.svg")
        }
        None => return Ok(()),
    };
    let runs = reports
        .iter()
        .filter(|r| CHART_CASES.contains(&r.name))
        .map(|r| r.runs[0].times.len())
        .min()
        .unwrap_or(0);
    let subtitle = format!(
        "median of {runs}+ alternating runs; {} on {}; `cargo bench --bench create`",
        fs.fstype, fs.device
    );
    chart::write(&path, &bars, &subtitle)?;
    eprintln!("create bench: chart written to {}", path.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Cases

fn volume_xml(name: &str, capacity: u64, mode: &str) -> String {
    format!(
        "<volume>\n  <name>{name}</name>\n  <capacity unit='bytes'>{capacity}</capacity>\n  \
         <target>\n    <format type='qcow2'/>\n    \
         <qpool:preallocation xmlns:qpool='urn:qpool:volume:1' mode='{mode}'/>\n  \
         </target>\n</volume>\n"
    )
}

/// qpool `vol-create` of a qcow2 volume with `mode`, and the same with `qemu-img create`.
fn create_pair(ctx: &Ctx, mode: &str, capacity: u64, size_arg: &str) -> Vec<Contender> {
    let name = format!("qpool-{mode}.qcow2");
    let xml = ctx.root.join(format!("{mode}.xml"));
    std::fs::write(&xml, volume_xml(&name, capacity, mode)).expect("write volume XML");
    let qemu_out = ctx.root.join(format!("qemu-img-{mode}.qcow2"));
    vec![
        Contender {
            name: "qpool",
            program: QPOOL.into(),
            args: vec![
                "--pool-dir".into(),
                ctx.pool.clone().into(),
                "vol-create".into(),
                xml.into(),
            ],
            output: Some(ctx.pool.join(name)),
        },
        Contender {
            name: "qemu-img",
            program: "qemu-img".into(),
            args: vec![
                "create".into(),
                "-q".into(),
                "-f".into(),
                "qcow2".into(),
                "-o".into(),
                format!("preallocation={mode}").into(),
                qemu_out.clone().into(),
                size_arg.into(),
            ],
            output: Some(qemu_out),
        },
    ]
}

/// A qpool-vs-qemu-img create case.
struct CreateSpec {
    name: &'static str,
    mode: &'static str,
    capacity: u64,
    /// The size as qemu-img is given it, and as the report shows it.
    size_arg: &'static str,
    target: Target,
    default_runs: usize,
}

fn case_metadata(ctx: &Ctx) -> Result<CaseReport, String> {
    create_case(
        ctx,
        &CreateSpec {
            name: "metadata-1T",
            mode: "metadata",
            capacity: TIB,
            size_arg: "1T",
            target: Target::Speedup(20.0),
            default_runs: 5,
        },
    )
}

fn case_falloc(ctx: &Ctx) -> Result<CaseReport, String> {
    create_case(
        ctx,
        &CreateSpec {
            name: "falloc-8G",
            mode: "falloc",
            capacity: 8 * GIB,
            size_arg: "8G",
            target: Target::Speedup(1.0),
            default_runs: 9,
        },
    )
}

fn case_off(ctx: &Ctx) -> Result<CaseReport, String> {
    create_case(
        ctx,
        &CreateSpec {
            name: "off-1T",
            mode: "off",
            capacity: TIB,
            size_arg: "1T",
            target: Target::Speedup(1.0),
            default_runs: 9,
        },
    )
}

fn size_label(size_arg: &str) -> String {
    let (n, unit) = size_arg.split_at(size_arg.len() - 1);
    format!("{n} {unit}iB")
}

fn create_case(ctx: &Ctx, spec: &CreateSpec) -> Result<CaseReport, String> {
    let title = format!(
        "qcow2 preallocation={}, {}",
        spec.mode,
        size_label(spec.size_arg)
    );
    let contenders = create_pair(ctx, spec.mode, spec.capacity, spec.size_arg);
    let mut notes = Vec::new();
    prepare(&contenders, spec.capacity, &mut notes)?;
    let runs = alternate(&contenders, ctx.runs(spec.default_runs))?;
    let row = Row {
        case: title.clone(),
        qpool: runs[0].median(),
        baseline: Some(("qemu-img", runs[1].median())),
        target: spec.target,
        data_bytes: None,
    };
    Ok(CaseReport {
        name: spec.name,
        title,
        rows: vec![row],
        runs,
        notes,
    })
}

/// The iteration time both contenders of the encrypted cases calibrate PBKDF2 to, in ms
/// (qemu-img's default is 2000; shorter keeps the bench short, the comparison is the same).
const LUKS_ITER_TIME_MS: u32 = 500;

fn case_luks_metadata(ctx: &Ctx) -> Result<CaseReport, String> {
    luks_case(ctx, "luks-metadata-1G", "metadata")
}

fn case_luks_falloc(ctx: &Ctx) -> Result<CaseReport, String> {
    luks_case(ctx, "luks-falloc-1G", "falloc")
}

/// qpool `vol-create --secret-file` of an encrypted 1 GiB qcow2 with `mode`, and
/// `qemu-img create` of the same with the same passphrase file and iteration time.
fn luks_case(ctx: &Ctx, name: &'static str, mode: &str) -> Result<CaseReport, String> {
    let capacity = GIB;
    let pass = ctx.root.join("passphrase");
    std::fs::write(&pass, "bench passphrase").map_err(|e| format!("{}: {e}", pass.display()))?;
    let vol = format!("qpool-luks-{mode}.qcow2");
    let xml = ctx.root.join(format!("luks-{mode}.xml"));
    let doc = format!(
        "<volume xmlns:qpool='urn:qpool:volume:1'>\n  <name>{vol}</name>\n  \
         <capacity unit='bytes'>{capacity}</capacity>\n  <target>\n    \
         <format type='qcow2'/>\n    <qpool:preallocation mode='{mode}'/>\n    \
         <encryption format='luks' qpool:iter-time='{LUKS_ITER_TIME_MS}'>\n      \
         <secret type='passphrase' usage='bench'/>\n    </encryption>\n  </target>\n</volume>\n"
    );
    std::fs::write(&xml, doc).map_err(|e| format!("{}: {e}", xml.display()))?;
    let mut object = OsString::from("secret,id=s0,file=");
    object.push(&pass);
    let qemu_out = ctx.root.join(format!("qemu-img-luks-{mode}.qcow2"));
    let contenders = vec![
        Contender {
            name: "qpool",
            program: QPOOL.into(),
            args: vec![
                "--pool-dir".into(),
                ctx.pool.clone().into(),
                "vol-create".into(),
                xml.into(),
                "--secret-file".into(),
                pass.clone().into(),
            ],
            output: Some(ctx.pool.join(vol)),
        },
        Contender {
            name: "qemu-img",
            program: "qemu-img".into(),
            args: vec![
                "create".into(),
                "-q".into(),
                "--object".into(),
                object.clone(),
                "-f".into(),
                "qcow2".into(),
                "-o".into(),
                format!(
                    "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time={LUKS_ITER_TIME_MS},preallocation={mode}"
                )
                .into(),
                qemu_out.clone().into(),
                "1G".into(),
            ],
            output: Some(qemu_out),
        },
    ];
    let mut notes = Vec::new();
    for c in &contenders {
        let path = c.output.as_ref().expect("create contenders make a file");
        remove_if_exists(path)?;
        sync()?;
        run_checked(c)?;
        let m = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut note = format!(
            "{}: `{}` → {} bytes apparent, {} allocated",
            c.name,
            c.display(),
            m.len(),
            fmt_bytes(m.blocks() * 512)
        );
        if c.name == "qpool" {
            let mut opts = OsString::from("driver=qcow2,encrypt.key-secret=s0,file.filename=");
            opts.push(path);
            qemu_check_args(
                &[
                    "--object".into(),
                    object.clone(),
                    "--image-opts".into(),
                    opts,
                ],
                path,
            )?;
            let virtual_size = qemu_virtual_size(path)?;
            if virtual_size != capacity {
                return Err(format!(
                    "qemu-img info reports virtual size {virtual_size} for {}, expected {capacity}",
                    path.display()
                ));
            }
            note.push_str("; `qemu-img check` with the secret: no errors, no leaks");
        }
        notes.push(note);
        remove_if_exists(path)?;
    }
    let runs = alternate(&contenders, ctx.runs(5))?;
    let title = format!("qcow2 LUKS preallocation={mode}, 1 GiB, iter-time {LUKS_ITER_TIME_MS} ms");
    let row = Row {
        case: title.clone(),
        qpool: runs[0].median(),
        baseline: Some(("qemu-img", runs[1].median())),
        target: Target::None,
        data_bytes: None,
    };
    Ok(CaseReport {
        name,
        title,
        rows: vec![row],
        runs,
        notes,
    })
}

fn case_full(ctx: &Ctx) -> Result<CaseReport, String> {
    let capacity = 4 * GIB;
    let mut contenders = create_pair(ctx, "full", capacity, "4G");
    let dd_out = ctx.root.join("dd.raw");
    let mut of = OsString::from("of=");
    of.push(&dd_out);
    contenders.push(Contender {
        name: "dd oflag=direct",
        program: "dd".into(),
        args: vec![
            "if=/dev/zero".into(),
            of,
            "bs=8M".into(),
            "count=512".into(),
            "oflag=direct".into(),
            "status=none".into(),
        ],
        output: Some(dd_out),
    });
    let dd_fsync_out = ctx.root.join("dd-fsync.raw");
    let mut of = OsString::from("of=");
    of.push(&dd_fsync_out);
    contenders.push(Contender {
        name: "dd conv=fsync",
        program: "dd".into(),
        args: vec![
            "if=/dev/zero".into(),
            of,
            "bs=8M".into(),
            "count=512".into(),
            "conv=fsync".into(),
            "status=none".into(),
        ],
        output: Some(dd_fsync_out),
    });
    let mut notes = Vec::new();
    prepare(&contenders, capacity, &mut notes)?;
    let runs = alternate(&contenders, ctx.runs(3))?;
    let title = "qcow2 preallocation=full, 4 GiB";
    // The target is the better of dd's two ways to write 4 GiB to the disk.
    let (direct, fsync) = (runs[2].median(), runs[3].median());
    let better_dd = if direct <= fsync {
        ("dd oflag=direct", direct)
    } else {
        ("dd conv=fsync", fsync)
    };
    let rows = vec![
        Row {
            case: format!("{title} (vs the better of dd bs=8M oflag=direct and conv=fsync, 4 GiB)"),
            qpool: runs[0].median(),
            baseline: Some(better_dd),
            target: Target::Speedup(1.0),
            data_bytes: Some(capacity),
        },
        Row {
            case: format!("{title} (vs qemu-img)"),
            qpool: runs[0].median(),
            baseline: Some(("qemu-img", runs[1].median())),
            target: Target::None,
            data_bytes: Some(capacity),
        },
    ];
    Ok(CaseReport {
        name: "full-4G",
        title: title.into(),
        rows,
        runs,
        notes,
    })
}

fn case_vol_list(ctx: &Ctx) -> Result<CaseReport, String> {
    let mut notes = Vec::new();
    let setup = Instant::now();
    let (qcow2, raw) = build_list_pool(ctx)?;
    notes.push(format!(
        "pool of {} volumes ({qcow2} qcow2 of {} made by qpool with preallocation=off, {raw} \
         sparse raw of {}), copied sparsely from qpool-made templates in {}; page cache warm",
        qcow2 + raw,
        fmt_bytes(LIST_QCOW2_CAPACITY),
        fmt_bytes(LIST_RAW_CAPACITY),
        fmt_dur(setup.elapsed())
    ));
    let contender = Contender {
        name: "qpool",
        program: QPOOL.into(),
        args: vec![
            "--pool-dir".into(),
            ctx.pool.clone().into(),
            "vol-list".into(),
            "--details".into(),
        ],
        output: None,
    };
    // Untimed run: check the listing is complete and probes every qcow2 header.
    let out = run_checked(&contender)?;
    verify_listing(&out.stdout, qcow2, raw)?;
    notes.push(format!(
        "`qpool vol-list --details` listed all {} volumes with the right capacities ({} bytes of \
         output)",
        qcow2 + raw,
        out.stdout.len()
    ));
    let runs = alternate(std::slice::from_ref(&contender), ctx.runs(5))?;
    let title = format!("vol-list --details, {LIST_VOLUMES} volumes");
    Ok(CaseReport {
        name: "vol-list-10k",
        title: title.clone(),
        rows: vec![Row {
            case: title,
            qpool: runs[0].median(),
            baseline: None,
            target: Target::Under(Duration::from_secs(1)),
            data_bytes: None,
        }],
        runs,
        notes,
    })
}

/// Fills the pool with `LIST_VOLUMES` volumes, half qcow2 and half raw; returns the counts.
fn build_list_pool(ctx: &Ctx) -> Result<(usize, usize), String> {
    let tpl_pool = ctx.root.join("templates");
    std::fs::create_dir_all(&tpl_pool).map_err(|e| e.to_string())?;
    let make =
        |name: &str, capacity: u64, format: &str, extra: &[&str]| -> Result<Vec<u8>, String> {
            let mut c = Contender {
                name: "qpool",
                program: QPOOL.into(),
                args: vec![
                    "--pool-dir".into(),
                    tpl_pool.clone().into(),
                    "vol-create-as".into(),
                    name.into(),
                    capacity.to_string().into(),
                    "--format".into(),
                    format.into(),
                ],
                output: None,
            };
            c.args.extend(extra.iter().map(OsString::from));
            run_checked(&c)?;
            let path = tpl_pool.join(name);
            if format == "qcow2" {
                qemu_check(&path)?;
            }
            std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
    let qcow2_tpl = make("t.qcow2", LIST_QCOW2_CAPACITY, "qcow2", &[])?;
    let raw_tpl = make("t.raw", LIST_RAW_CAPACITY, "raw", &["--allocation", "0"])?;
    if raw_tpl.len() as u64 != LIST_RAW_CAPACITY {
        return Err(format!(
            "qpool made a raw template of {} bytes, expected {LIST_RAW_CAPACITY}",
            raw_tpl.len()
        ));
    }
    let qcow2_chunks = nonzero_chunks(&qcow2_tpl);
    let raw_chunks = nonzero_chunks(&raw_tpl);
    let (mut qcow2, mut raw) = (0, 0);
    for i in 0..LIST_VOLUMES {
        let (name, tpl, chunks) = if i % 2 == 0 {
            qcow2 += 1;
            (format!("vol-{i:05}.qcow2"), &qcow2_tpl, &qcow2_chunks)
        } else {
            raw += 1;
            (format!("vol-{i:05}.raw"), &raw_tpl, &raw_chunks)
        };
        let path = ctx.pool.join(name);
        let f = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for &(off, len) in chunks {
            f.write_all_at(&tpl[off..off + len], off as u64)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        f.set_len(tpl.len() as u64)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    std::fs::remove_dir_all(&tpl_pool).map_err(|e| e.to_string())?;
    sync()?;
    Ok((qcow2, raw))
}

/// (offset, length) of the 4 KiB blocks of `data` that are not all zero, merged into runs.
fn nonzero_chunks(data: &[u8]) -> Vec<(usize, usize)> {
    const BLOCK: usize = 4096;
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, block) in data.chunks(BLOCK).enumerate() {
        if block.iter().all(|&b| b == 0) {
            continue;
        }
        let off = i * BLOCK;
        match out.last_mut() {
            Some((o, l)) if *o + *l == off => *l += block.len(),
            _ => out.push((off, block.len())),
        }
    }
    out
}

/// Checks `vol-list --details` output: every volume listed once, with its format's capacity.
fn verify_listing(stdout: &[u8], qcow2: usize, raw: usize) -> Result<(), String> {
    let text = String::from_utf8_lossy(stdout);
    let want_qcow2 = pretty(LIST_QCOW2_CAPACITY);
    let want_raw = pretty(LIST_RAW_CAPACITY);
    let (mut seen_qcow2, mut seen_raw) = (0, 0);
    for line in text.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let Some(name) = tokens.first() else { continue };
        if !name.starts_with("vol-") || tokens.len() < 7 {
            continue;
        }
        let capacity = format!("{} {}", tokens[tokens.len() - 4], tokens[tokens.len() - 3]);
        let (want, seen) = if name.ends_with(".qcow2") {
            (&want_qcow2, &mut seen_qcow2)
        } else {
            (&want_raw, &mut seen_raw)
        };
        if &capacity != want {
            return Err(format!(
                "vol-list --details shows capacity {capacity} for {name}, expected {want}: {line}"
            ));
        }
        *seen += 1;
    }
    if seen_qcow2 != qcow2 || seen_raw != raw {
        return Err(format!(
            "vol-list --details listed {seen_qcow2} qcow2 and {seen_raw} raw volumes, expected \
             {qcow2} and {raw}"
        ));
    }
    Ok(())
}

/// virsh's pretty size for the capacities used here (whole GiB).
fn pretty(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / GIB as f64)
}

/// Makes the copy cases' source in the pool (untimed): a qcow2 volume of `SOURCE_CAPACITY`
/// created by qpool, then `SOURCE_DATA` bytes of non-zero data written into it by `qemu-io`,
/// checked with `qemu-img check` and synced. Returns its path.
fn build_source(ctx: &Ctx, notes: &mut Vec<String>) -> Result<PathBuf, String> {
    which("qemu-io")?;
    let started = Instant::now();
    run_checked(&Contender {
        name: "qpool",
        program: QPOOL.into(),
        args: vec![
            "--pool-dir".into(),
            ctx.pool.clone().into(),
            "vol-create-as".into(),
            SOURCE_NAME.into(),
            SOURCE_CAPACITY.to_string().into(),
            "--format".into(),
            "qcow2".into(),
        ],
        output: None,
    })?;
    let path = ctx.pool.join(SOURCE_NAME);
    let stride = SOURCE_CAPACITY / SOURCE_EXTENTS;
    let mut writer = Contender {
        name: "qemu-io",
        program: "qemu-io".into(),
        args: vec!["-f".into(), "qcow2".into()],
        output: None,
    };
    for i in 0..SOURCE_EXTENTS {
        writer.args.push("-c".into());
        writer.args.push(
            format!(
                "write -P {:#04x} {} {SOURCE_EXTENT_LEN}",
                0x11 * (i + 1),
                i * stride
            )
            .into(),
        );
    }
    writer.args.push(path.clone().into());
    run_checked(&writer)?;
    qemu_check(&path)?;
    let virtual_size = qemu_virtual_size(&path)?;
    if virtual_size != SOURCE_CAPACITY {
        return Err(format!(
            "qemu-img info reports virtual size {virtual_size} for {}, expected \
             {SOURCE_CAPACITY}",
            path.display()
        ));
    }
    sync()?;
    let m = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    notes.push(format!(
        "source `$DIR/pool/{SOURCE_NAME}`: {} qcow2 made by `qpool vol-create-as`, then {} of \
         data written by `qemu-io` ({SOURCE_EXTENTS} writes of {}, one every {}, patterns \
         0x11…0x{:02x}) → {} bytes apparent, {} allocated; `qemu-img check` clean; built in {} \
         (untimed), so it is in the page cache for every run",
        fmt_bytes(SOURCE_CAPACITY),
        fmt_bytes(SOURCE_DATA),
        fmt_bytes(SOURCE_EXTENT_LEN),
        fmt_bytes(stride),
        0x11 * SOURCE_EXTENTS,
        m.len(),
        fmt_bytes(m.blocks() * 512),
        fmt_dur(started.elapsed())
    ));
    Ok(path)
}

/// The note on how the copy cases are timed.
const THEN_SYNC_NOTE: &str = "each run is timed as \"command + `sync`\" (`sync` inside the \
    timed region, for both contenders): qpool flushes what it wrote before it exits, the other \
    does not, so only the synced time compares the same work; \"command alone\" is the same \
    runs' time from start to exit, for information";

fn case_clone(ctx: &Ctx) -> Result<CaseReport, String> {
    let mut notes = Vec::new();
    let src = build_source(ctx, &mut notes)?;
    let copy_name = "copy.qcow2";
    let qemu_out = ctx.root.join("qemu-img-copy.qcow2");
    let contenders = [
        Contender {
            name: "qpool",
            program: QPOOL.into(),
            args: vec![
                "--pool-dir".into(),
                ctx.pool.clone().into(),
                "vol-clone".into(),
                SOURCE_NAME.into(),
                copy_name.into(),
            ],
            output: Some(ctx.pool.join(copy_name)),
        },
        Contender {
            name: "qemu-img",
            program: "qemu-img".into(),
            args: vec![
                "convert".into(),
                "-O".into(),
                "qcow2".into(),
                src.clone().into(),
                qemu_out.clone().into(),
            ],
            output: Some(qemu_out),
        },
    ];
    prepare_then_sync(&contenders, &mut notes, &|copy| {
        qemu_check(copy)?;
        let virtual_size = qemu_virtual_size(copy)?;
        if virtual_size != SOURCE_CAPACITY {
            return Err(format!(
                "qemu-img info reports virtual size {virtual_size} for {}, expected \
                 {SOURCE_CAPACITY}",
                copy.display()
            ));
        }
        qemu_compare(&src, copy, false)?;
        let strict = match qemu_compare(&src, copy, true) {
            Ok(()) => "allocation identical too (`-s`)".to_string(),
            Err(e) => format!("but `qemu-img compare -s` (allocation too) differs: {e}"),
        };
        Ok(format!(
            "`qemu-img check`: no errors, no leaks; `qemu-img compare` with the source: \
             identical, {strict}"
        ))
    })?;
    notes.push(THEN_SYNC_NOTE.into());
    let (synced, alone) = alternate_then_sync(&contenders, ctx.runs(7))?;
    let title = format!(
        "clone of a {} qcow2 holding {}",
        fmt_bytes(SOURCE_CAPACITY),
        fmt_bytes(SOURCE_DATA)
    );
    let rows = vec![
        Row {
            case: format!("{title}, command + `sync` (vs qemu-img convert -O qcow2)"),
            qpool: synced[0].median(),
            baseline: Some(("qemu-img convert", synced[1].median())),
            target: Target::Speedup(1.0),
            data_bytes: Some(SOURCE_DATA),
        },
        Row {
            case: format!("{title}, command alone (qemu-img convert does not flush)"),
            qpool: alone[0].median(),
            baseline: Some(("qemu-img convert", alone[1].median())),
            target: Target::None,
            data_bytes: Some(SOURCE_DATA),
        },
    ];
    Ok(CaseReport {
        name: "clone-4G-1G",
        title,
        rows,
        runs: synced.into_iter().chain(alone).collect(),
        notes,
    })
}

fn case_download(ctx: &Ctx) -> Result<CaseReport, String> {
    which("cmp")?;
    let mut notes = Vec::new();
    let src = build_source(ctx, &mut notes)?;
    let file_len = std::fs::metadata(&src)
        .map_err(|e| format!("{}: {e}", src.display()))?
        .len();
    let qpool_out = ctx.root.join("qpool-download.img");
    let dd_out = ctx.root.join("dd-download.img");
    let mut dd_if = OsString::from("if=");
    dd_if.push(&src);
    let mut dd_of = OsString::from("of=");
    dd_of.push(&dd_out);
    let contenders = [
        Contender {
            name: "qpool",
            program: QPOOL.into(),
            args: vec![
                "--pool-dir".into(),
                ctx.pool.clone().into(),
                "vol-download".into(),
                SOURCE_NAME.into(),
                qpool_out.clone().into(),
            ],
            output: Some(qpool_out),
        },
        Contender {
            name: "dd",
            program: "dd".into(),
            args: vec![dd_if, dd_of, "bs=8M".into(), "status=none".into()],
            output: Some(dd_out),
        },
    ];
    prepare_then_sync(&contenders, &mut notes, &|out| {
        files_identical(&src, out)?;
        Ok("`cmp` with the volume file: identical".into())
    })?;
    notes.push(THEN_SYNC_NOTE.into());
    let (synced, alone) = alternate_then_sync(&contenders, ctx.runs(7))?;
    let title = format!(
        "download of a {} qcow2 holding {} (file of {}, no --sparse)",
        fmt_bytes(SOURCE_CAPACITY),
        fmt_bytes(SOURCE_DATA),
        fmt_bytes(file_len)
    );
    let rows = vec![Row {
        case: format!("{title}, command + `sync` (vs dd bs=8M)"),
        qpool: synced[0].median(),
        baseline: Some(("dd", synced[1].median())),
        target: Target::None,
        data_bytes: Some(file_len),
    }];
    Ok(CaseReport {
        name: "download-4G-1G",
        title,
        rows,
        runs: synced.into_iter().chain(alone).collect(),
        notes,
    })
}

// ---------------------------------------------------------------------------------------------
// Running and timing

/// Runs every contender once, untimed: warms the page cache, checks the qpool image with
/// `qemu-img check` and `qemu-img info`, and notes each image's size and allocation.
fn prepare(contenders: &[Contender], capacity: u64, notes: &mut Vec<String>) -> Result<(), String> {
    for c in contenders {
        let path = c.output.as_ref().expect("create contenders make a file");
        remove_if_exists(path)?;
        sync()?;
        run_checked(c)?;
        let m = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut note = format!(
            "{}: `{}` → {} bytes apparent, {} allocated",
            c.name,
            c.display(),
            m.len(),
            fmt_bytes(m.blocks() * 512)
        );
        if c.name == "qpool" {
            qemu_check(path)?;
            let virtual_size = qemu_virtual_size(path)?;
            if virtual_size != capacity {
                return Err(format!(
                    "qemu-img info reports virtual size {virtual_size} for {}, expected {capacity}",
                    path.display()
                ));
            }
            note.push_str("; `qemu-img check`: no errors, no leaks");
        }
        notes.push(note);
        remove_if_exists(path)?;
    }
    Ok(())
}

/// The copy cases' untimed first run of every contender (each followed by `sync`): warms the
/// page cache, notes each output's size and allocation, and checks qpool's output with
/// `verify`, whose text joins the note.
fn prepare_then_sync(
    contenders: &[Contender],
    notes: &mut Vec<String>,
    verify: &dyn Fn(&Path) -> Result<String, String>,
) -> Result<(), String> {
    for c in contenders {
        let path = c.output.as_ref().expect("copy contenders make a file");
        remove_if_exists(path)?;
        sync()?;
        run_checked(c)?;
        sync()?;
        let m = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut note = format!(
            "{}: `{}` → {} bytes apparent, {} allocated",
            c.name,
            c.display(),
            m.len(),
            fmt_bytes(m.blocks() * 512)
        );
        if c.name == "qpool" {
            note.push_str("; ");
            note.push_str(&verify(path)?);
        }
        notes.push(note);
        remove_if_exists(path)?;
    }
    Ok(())
}

/// Timed runs, alternating between the contenders; before each: sync; after each: delete its
/// output.
fn alternate(contenders: &[Contender], runs: usize) -> Result<Vec<Runs>, String> {
    timed_rounds(contenders, runs, false).map(|(timed, _)| timed)
}

/// [`alternate`], each run timed as "command + `sync`" (the sync inside the timed region).
/// Returns those times (tools named "NAME + sync") and, from the same runs, the command's own
/// time from start to exit (named "NAME, command alone").
fn alternate_then_sync(
    contenders: &[Contender],
    runs: usize,
) -> Result<(Vec<Runs>, Vec<Runs>), String> {
    timed_rounds(contenders, runs, true)
}

/// The rounds behind [`alternate`] and [`alternate_then_sync`]: the timed runs, and the
/// command-alone times (the same as the timed ones without `then_sync`).
fn timed_rounds(
    contenders: &[Contender],
    runs: usize,
    then_sync: bool,
) -> Result<(Vec<Runs>, Vec<Runs>), String> {
    let series = |suffix: &str| -> Vec<Runs> {
        contenders
            .iter()
            .map(|c| Runs {
                name: format!("{}{suffix}", c.name),
                times: Vec::with_capacity(runs),
            })
            .collect()
    };
    let (mut timed, mut alone) = if then_sync {
        (series(" + sync"), series(", command alone"))
    } else {
        (series(""), series(""))
    };
    for round in 0..runs {
        for (i, c) in contenders.iter().enumerate() {
            if let Some(path) = &c.output {
                remove_if_exists(path)?;
            }
            sync()?;
            let started = Instant::now();
            let output = c
                .command()
                .output()
                .map_err(|e| format!("cannot run {}: {e}", c.display()))?;
            let command_time = started.elapsed();
            let elapsed = if then_sync {
                sync()?;
                started.elapsed()
            } else {
                command_time
            };
            check_status(c, &output)?;
            if then_sync {
                eprintln!(
                    "   run {}/{runs} {:<8} {} (command alone {})",
                    round + 1,
                    c.name,
                    fmt_dur(elapsed),
                    fmt_dur(command_time)
                );
            } else {
                eprintln!(
                    "   run {}/{runs} {:<8} {}",
                    round + 1,
                    c.name,
                    fmt_dur(elapsed)
                );
            }
            timed[i].times.push(elapsed);
            alone[i].times.push(command_time);
            // One output on disk at a time (the space check counts one).
            if let Some(path) = &c.output {
                remove_if_exists(path)?;
            }
        }
    }
    sync()?;
    Ok((timed, alone))
}

fn run_checked(c: &Contender) -> Result<Output, String> {
    let output = c
        .command()
        .output()
        .map_err(|e| format!("cannot run {}: {e}", c.display()))?;
    check_status(c, &output)?;
    Ok(output)
}

fn check_status(c: &Contender, output: &Output) -> Result<(), String> {
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "`{}` failed ({}): {}",
        c.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

/// `qemu-img check`: fails unless the image has no corruptions, leaks or check errors.
fn qemu_check(path: &Path) -> Result<(), String> {
    qemu_check_args(&[path.as_os_str().to_owned()], path)
}

/// [`qemu_check`] with the image given by `args` (an encrypted image's secret object and
/// `--image-opts`); `path` names it in messages.
fn qemu_check_args(args: &[OsString], path: &Path) -> Result<(), String> {
    let out = Command::new("qemu-img")
        .arg("check")
        .arg("--output=json")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run qemu-img check: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "qemu-img check {} exited with {}: {} {}",
            path.display(),
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("qemu-img check output is not JSON ({e}): {text}"))?;
    for key in ["corruptions", "leaks", "check-errors"] {
        let n = v.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
        if n != 0 {
            return Err(format!(
                "qemu-img check {}: {key} = {n}: {text}",
                path.display()
            ));
        }
    }
    Ok(())
}

/// `qemu-img compare` of two qcow2 images (`strict`: `-s`, allocation must match too); fails
/// unless they are identical.
fn qemu_compare(a: &Path, b: &Path, strict: bool) -> Result<(), String> {
    let mut cmd = Command::new("qemu-img");
    cmd.args(["compare", "-f", "qcow2", "-F", "qcow2"]);
    if strict {
        cmd.arg("-s");
    }
    let out = cmd
        .arg(a)
        .arg(b)
        .output()
        .map_err(|e| format!("cannot run qemu-img compare: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "qemu-img compare{} {} {} exited with {}: {} {}",
        if strict { " -s" } else { "" },
        a.display(),
        b.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// `cmp`: fails unless the two files hold the same bytes.
fn files_identical(a: &Path, b: &Path) -> Result<(), String> {
    let out = Command::new("cmp")
        .arg(a)
        .arg(b)
        .output()
        .map_err(|e| format!("cannot run cmp: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "cmp {} {} exited with {}: {} {}",
        a.display(),
        b.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

fn qemu_virtual_size(path: &Path) -> Result<u64, String> {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json", "-f", "qcow2"])
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run qemu-img info: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "qemu-img info {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("qemu-img info: {e}"))?;
    v.get("virtual-size")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| format!("qemu-img info {}: no virtual-size", path.display()))
}

fn sync() -> Result<(), String> {
    let status = Command::new("sync")
        .status()
        .map_err(|e| format!("cannot run sync: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("sync failed: {status}"))
    }
}

fn remove_if_exists(path: &Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    }
}

fn which(tool: &str) -> Result<(), String> {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
    if found {
        Ok(())
    } else {
        Err(format!("`{tool}` is not on PATH"))
    }
}

// ---------------------------------------------------------------------------------------------
// The scratch directory and the machine

/// Removes the directory tree on drop (also when a case panics).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.exists()
            && let Err(e) = std::fs::remove_dir_all(&self.0)
        {
            eprintln!("warning: cannot remove {}: {e}", self.0.display());
        }
    }
}

/// Empties a directory (the pool between cases).
fn clear_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// In the default location only: removes `qpool-bench-PID` directories of dead processes
/// (left behind by an interrupted bench).
fn remove_stale_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("qpool-bench-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!(
                "removing {} left by an interrupted bench",
                e.path().display()
            );
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Bytes available to us and free inodes on the filesystem holding `dir`.
fn free_space(dir: &Path) -> Result<(u64, u64), String> {
    let c = CString::new(dir.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: statvfs is a plain C struct of integers; all zeros is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(format!(
            "statvfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok((st.f_bavail as u64 * st.f_frsize as u64, st.f_favail as u64))
}

#[derive(Default)]
struct FsInfo {
    device: String,
    mountpoint: String,
    fstype: String,
    options: String,
}

/// The mount holding `dir` (longest matching mount point in /proc/self/mounts).
fn filesystem_of(dir: &Path) -> FsInfo {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut best = FsInfo::default();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 4 {
            continue;
        }
        let mp = f[1].replace("\\040", " ");
        if dir.starts_with(&mp) && mp.len() >= best.mountpoint.len() {
            best = FsInfo {
                device: f[0].to_string(),
                mountpoint: mp,
                fstype: f[2].to_string(),
                options: f[3].to_string(),
            };
        }
    }
    best
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The commit qpool was built from, and whether src/ had uncommitted changes.
fn git_revision() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) => {
            let dirty = git(&["status", "--porcelain", "--", "src", "Cargo.toml"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("built from git {rev} plus uncommitted changes")
            } else {
                format!("built from git {rev}")
            }
        }
        None => "not a git checkout".into(),
    }
}

fn machine_info(root: &Path, fs: &FsInfo, avail: u64) -> Vec<String> {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("?".to_string(), |(_, m)| m.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    let qemu = Command::new("qemu-img")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    let discard = if fs.options.split(',').any(|o| o == "discard") {
        ", mounted with discard"
    } else {
        ""
    };
    vec![
        format!(
            "Linux {kernel}, {cpus} CPUs ({model}), {} RAM, load average {} at start",
            fmt_bytes(mem_kib * KIB),
            load_average()
        ),
        format!(
            "bench directory $DIR = {} on {} ({}{discard}, mount point {}), {} free",
            root.display(),
            fs.device,
            fs.fstype,
            fs.mountpoint,
            fmt_bytes(avail)
        ),
        format!("{qemu}; qpool {QPOOL}, {}", git_revision()),
    ]
}

// ---------------------------------------------------------------------------------------------
// Report

fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.3} s")
    }
}

fn fmt_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= GIB as f64 {
        format!("{:.1} GiB", b / GIB as f64)
    } else if b >= MIB as f64 {
        format!("{:.1} MiB", b / MIB as f64)
    } else {
        format!("{:.0} KiB", b / KIB as f64)
    }
}

fn fmt_median(d: Duration, data_bytes: Option<u64>) -> String {
    match data_bytes {
        Some(bytes) => format!(
            "{} ({:.2} GB/s)",
            fmt_dur(d),
            bytes as f64 / d.as_secs_f64() / 1e9
        ),
        None => fmt_dur(d),
    }
}

fn render(
    machine: &[String],
    reports: &[CaseReport],
    failures: &[(&str, String)],
    total: Duration,
    load_end: String,
) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "### qpool create benchmark (`cargo bench --bench create`)\n"
    );
    for line in machine {
        let _ = writeln!(o, "- {line}");
    }
    let _ = writeln!(
        o,
        "- wall time of whole processes (std::time::Instant); median of alternating runs \
         (qpool, other, qpool, other, …; counts below); previous image deleted and `sync` run before every run; every image \
         freshly created"
    );
    let _ = writeln!(
        o,
        "- ratio = other median ÷ qpool median (> 1: qpool is faster)\n"
    );

    let _ = writeln!(
        o,
        "| case | qpool median | qemu-img (or dd) median | ratio | target | reached? |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for r in reports.iter().flat_map(|r| &r.rows) {
        let (other, ratio, baseline_name) = match r.baseline {
            Some((name, d)) => (
                format!("{name}: {}", fmt_median(d, r.data_bytes)),
                Some(d.as_secs_f64() / r.qpool.as_secs_f64()),
                name,
            ),
            None => ("—".into(), None, ""),
        };
        let reached = match (r.target, ratio) {
            (Target::Speedup(x), Some(ratio)) => Some(ratio >= x),
            (Target::Under(limit), _) => Some(r.qpool < limit),
            _ => None,
        };
        let _ = writeln!(
            o,
            "| {} | {} | {other} | {} | {} | {} |",
            r.case,
            fmt_median(r.qpool, r.data_bytes),
            ratio.map_or("—".into(), |x| format!("{x:.2}×")),
            r.target.describe(baseline_name),
            match reached {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            }
        );
    }
    for (name, e) in failures {
        let _ = writeln!(
            o,
            "| {name} | **FAILED** | — | — | — | {} |",
            e.replace('|', "\\|").replace('\n', " ")
        );
    }

    let _ = writeln!(o, "\nIndividual runs:\n");
    let _ = writeln!(o, "| case | tool | runs, in run order | median |");
    let _ = writeln!(o, "|---|---|---|---|");
    for r in reports {
        for t in &r.runs {
            let list: Vec<String> = t.times.iter().map(|d| fmt_dur(*d)).collect();
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                r.title,
                t.name,
                list.join(", "),
                fmt_dur(t.median())
            );
        }
    }

    let _ = writeln!(
        o,
        "\nChecks and image sizes (untimed first run of each contender):\n"
    );
    for r in reports {
        for n in &r.notes {
            let _ = writeln!(o, "- {}: {n}", r.name);
        }
    }
    let _ = writeln!(
        o,
        "\nWhole bench: {} (load average at end {load_end}).",
        fmt_dur(total)
    );
    o
}
