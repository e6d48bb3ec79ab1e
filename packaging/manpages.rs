//! Writes qpool(1) and qpoold(8) and the bash and zsh completions of both binaries from their
//! clap definitions, so that none of them can drift from `--help`:
//!
//! ```text
//! cargo run --example qpool-manpages -- OUTDIR
//! ```
//!
//! writes `OUTDIR/man/qpool.1`, `OUTDIR/man/qpoold.8`, `OUTDIR/completions/{qpool,qpoold}`
//! (bash) and `OUTDIR/completions/{_qpool,_qpoold}` (zsh). qpoold.conf(5) is written by hand
//! (`packaging/man/qpoold.conf.5`): no clap definition describes the file.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

const MANUAL: &str = "qpool Manual";

fn source() -> String {
    format!("qpool {}", env!("CARGO_PKG_VERSION"))
}

/// A section of plain paragraphs; `(term, text)` items become `.TP` entries.
fn section(roff: &mut Roff, title: &str, intro: &[&str], items: &[(&str, &str)]) {
    roff.control("SH", [title]);
    for p in intro {
        roff.control("PP", []);
        roff.text([roman(*p)]);
    }
    for (term, text) in items {
        roff.control("TP", []);
        roff.text([bold(*term)]);
        roff.text([roman(*text)]);
    }
}

/// The NAME section: the binary and its `about` line (without the "name: " it starts with).
fn name_section(roff: &mut Roff, cmd: &clap::Command) {
    let name = cmd.get_name();
    let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
    let about = about.strip_prefix(&format!("{name}: ")).unwrap_or(&about);
    roff.control("SH", ["NAME"]);
    roff.text([roman(format!("{name} - {about}"))]);
}

/// One subcommand, as its `--help` shows it: usage, what it does, its arguments.
fn subcommand(roff: &mut Roff, cmd: &clap::Command) {
    roff.control("SS", [cmd.get_name()]);
    let usage = cmd.clone().render_usage().to_string();
    let usage = usage.trim_start_matches("Usage: ").trim();
    roff.control("PP", []);
    roff.text([bold(usage)]);
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        roff.control("PP", []);
        roff.text([roman(about.to_string())]);
    }
    for arg in cmd.get_arguments() {
        if arg.is_hide_set() || arg.is_global_set() {
            continue;
        }
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        let value = arg
            .get_value_names()
            .map(|v| {
                v.iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| id.to_uppercase());
        roff.control("TP", []);
        match (arg.get_long(), arg.get_short()) {
            (Some(long), short) => {
                let mut inline = Vec::new();
                if let Some(s) = short {
                    inline.push(bold(format!("-{s}")));
                    inline.push(roman(", "));
                }
                inline.push(bold(format!("--{long}")));
                if arg.get_action().takes_values() {
                    inline.push(roman(" "));
                    inline.push(italic(value));
                }
                roff.text(inline);
            }
            (None, _) => {
                roff.text([italic(value)]);
            }
        }
        let mut help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if !defaults.is_empty() && arg.get_action().takes_values() {
            help.push_str(&format!(" [default: {}]", defaults.join(", ")));
        }
        roff.text([roman(help)]);
    }
}

fn qpool_page() -> Vec<u8> {
    let mut cmd = qpool::cli::Args::command();
    cmd.build();
    let man = Man::new(cmd.clone())
        .section("1")
        .source(source())
        .manual(MANUAL);
    let mut out = Vec::new();
    man.render_title(&mut out).unwrap();
    let mut roff = Roff::default();
    name_section(&mut roff, &cmd);
    roff.to_writer(&mut out).unwrap();
    man.render_synopsis_section(&mut out).unwrap();
    let mut roff = Roff::default();
    section(
        &mut roff,
        "DESCRIPTION",
        &[
            "qpool creates, inspects and changes the qcow2 and raw volumes of a libvirt-compatible storage pool directory, with no daemon. Its verbs, flags and output follow virsh's storage verbs, minus virsh's pool argument: the pool is the default pool (/var/lib/qpool/images as root, else $XDG_DATA_HOME/qpool/images) or the directory given with --pool-dir.",
            "A volume is created natively (no qemu-img) from libvirt volume XML or from arguments; the preallocation follows from <allocation>, <capacity> and <format> (see the explain verb). A volume appears under its name only when complete, and an error leaves the pool as it was.",
            "With --connect, or libvirt_uri in qpoold.conf(5), each change is followed by a refresh of the pool's mirror in that libvirtd (the libvirt bridge, see libvirt-sync).",
            "qpool does not load libvirt itself: for libvirt-sync and each refresh it runs qpoold(8) once, the one beside qpool, else ../sbin/qpoold from qpool's directory, else the first in PATH. Without qpoold, libvirt-sync fails and a change stands with a warning.",
        ],
        &[],
    );
    roff.to_writer(&mut out).unwrap();
    man.render_options_section(&mut out).unwrap();
    let mut roff = Roff::default();
    roff.control("SH", ["COMMANDS"]);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        subcommand(&mut roff, sub);
    }
    section(
        &mut roff,
        "ENVIRONMENT",
        &[],
        &[
            ("QPOOL_POOL_DIR", "The pool directory, as --pool-dir."),
            (
                "QPOOL_LIBVIRT_URI",
                "The libvirt URI to mirror changes into, as --connect.",
            ),
            (
                "QPOOL_LOG, RUST_LOG",
                "Log filter (env_logger syntax, e.g. info or debug); default warn. Logs go to standard error.",
            ),
        ],
    );
    section(
        &mut roff,
        "EXIT STATUS",
        &[
            "0 on success; 1 on any error, after one line on standard error that starts with error: and says what is wrong and where.",
        ],
        &[],
    );
    section(
        &mut roff,
        "FILES",
        &[],
        &[
            (
                "/var/lib/qpool/images",
                "The default pool when run as root.",
            ),
            (
                "/etc/qpool/storage",
                "qpoold's pool definitions, which libvirt-sync mirrors.",
            ),
            (
                "/etc/qpool/qpoold.conf",
                "Read for libvirt_uri and libvirt_prefix.",
            ),
            (
                "/usr/share/qpool/xml-schemas",
                "RelaxNG schemas of the XML qpool accepts.",
            ),
        ],
    );
    section(
        &mut roff,
        "SEE ALSO",
        &["qpoold(8), qpoold.conf(5), virsh(1), qemu-img(1)"],
        &[],
    );
    roff.to_writer(&mut out).unwrap();
    man.render_version_section(&mut out).unwrap();
    out
}

fn qpoold_page() -> Vec<u8> {
    let mut cmd = qpool::daemon::Args::command();
    cmd.build();
    let man = Man::new(cmd.clone())
        .section("8")
        .source(source())
        .manual(MANUAL);
    let mut out = Vec::new();
    man.render_title(&mut out).unwrap();
    let mut roff = Roff::default();
    name_section(&mut roff, &cmd);
    roff.to_writer(&mut out).unwrap();
    man.render_synopsis_section(&mut out).unwrap();
    let mut roff = Roff::default();
    section(
        &mut roff,
        "DESCRIPTION",
        &[
            "qpoold serves qpool's storage pools over libvirt's own remote protocol (the storage driver's procedures), so that unmodified virsh, virt-manager, libvirt-python and the Rust virt crate manage qpool pools. Clients connect with the URI storage+unix:///system?socket=/run/qpool/qpoold-sock (read-write, mode 0600) or the read-only socket /run/qpool/qpoold-sock-ro (mode 0666), on which only queries are allowed.",
            "Pools are libvirt pool XML definitions in /etc/qpool/storage; with none, qpoold defines the autostarted pool default on /var/lib/qpool/images. Under systemd, qpoold is started by qpoold.socket on the first connection and exits after --timeout idle seconds.",
            "With libvirt_uri set in qpoold.conf(5), qpoold mirrors each of its pools into that libvirtd as a dir pool on the same directory and refreshes it after every change, so that libvirtd's domains see qpool volumes at once.",
            "The command line wins over qpoold.conf, which wins over the built-in defaults.",
        ],
        &[],
    );
    roff.to_writer(&mut out).unwrap();
    man.render_options_section(&mut out).unwrap();
    let mut roff = Roff::default();
    section(
        &mut roff,
        "SIGNALS",
        &[],
        &[
            (
                "SIGTERM, SIGINT",
                "Stop accepting connections, let running calls finish for a while, remove the sockets qpoold created and exit.",
            ),
            (
                "SIGHUP",
                "Re-read the pool definitions and the configuration without dropping connections.",
            ),
        ],
    );
    section(
        &mut roff,
        "ENVIRONMENT",
        &[],
        &[(
            "QPOOL_LOG, RUST_LOG",
            "Log filter (env_logger syntax); debug logs every call answered. Logs go to standard error (the journal under systemd).",
        )],
    );
    section(
        &mut roff,
        "FILES",
        &[],
        &[
            (
                "/etc/qpool/qpoold.conf",
                "Configuration, see qpoold.conf(5).",
            ),
            (
                "/etc/qpool/storage",
                "Pool definitions (NAME.xml; autostart/NAME.xml links).",
            ),
            (
                "/run/qpool/qpoold-sock, /run/qpool/qpoold-sock-ro",
                "The read-write and read-only sockets.",
            ),
            ("/var/lib/qpool/images", "Target of the default pool."),
        ],
    );
    section(
        &mut roff,
        "SEE ALSO",
        &["qpool(1), qpoold.conf(5), virsh(1), libvirtd(8), systemd.socket(5)"],
        &[],
    );
    roff.to_writer(&mut out).unwrap();
    man.render_version_section(&mut out).unwrap();
    out
}

fn write(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::File::create(path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    f.write_all(bytes)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn main() {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: qpool-manpages OUTDIR");
        std::process::exit(1);
    };
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    }
    write(&man.join("qpool.1"), &qpool_page());
    write(&man.join("qpoold.8"), &qpoold_page());
    for (name, mut cmd) in [
        ("qpool", qpool::cli::Args::command()),
        ("qpoold", qpool::daemon::Args::command()),
    ] {
        for (shell, file) in [
            (Shell::Bash, name.to_string()),
            (Shell::Zsh, format!("_{name}")),
        ] {
            let mut bytes = Vec::new();
            clap_complete::generate(shell, &mut cmd, name, &mut bytes);
            write(&completions.join(file), &bytes);
        }
    }
}
