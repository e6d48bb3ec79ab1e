//! qpoold's one-shot mode: a bridge [`Job`] that `qpool` hands over (`qpoold libvirt-sync …`,
//! `crate::bridge::job`), run once, so that the `qpool` binary never links libvirt.
//!
//! Owns: telling a job's command line from the daemon's ([`requested`]: the first argument
//! names the job; the job's parser is apart from [`super::Args`], so that qpoold's `--help`,
//! man page and completions stay the daemon's); running a job and everything it prints, as `qpool` printed it when it ran the bridge
//! itself: for a sync, the lines of what was done (`Pool … defined`) on stdout, then a
//! `warning: pool '…': …` line for each pool that failed and one `error: …` line; after a
//! change, what was done in the log, or one `warning: libvirt pool not refreshed: …` line;
//! for a secret, its value on stdout (a pipe to `qpool`) and nothing else, or one `error: …`
//! line;
//! and the exit status (0, or [`job::FAILED`] once the failure is said).
//! Must not: read qpoold.conf (`qpool` passes the settings it resolved), serve any socket,
//! or change qpool's pools or volumes.

use std::ffi::OsString;
use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;

use crate::bridge::job::{self, ChangedJob, Job, SecretJob, SyncJob};
use crate::bridge::{Bridge, BridgeError, stored_pools};
use crate::error::one_line;
use crate::pool::Secrets as _;

/// qpoold's command line when it runs a job.
#[derive(Debug, Parser)]
#[command(name = "qpoold", disable_help_subcommand = true)]
struct JobArgs {
    #[command(subcommand)]
    job: Job,
}

/// The job on qpoold's command line, if its first argument names one; a malformed job
/// line exits as clap does (a usage error, status 2).
pub fn requested() -> Option<Job> {
    parse(std::env::args_os().collect()).map(|parsed| parsed.unwrap_or_else(|e| e.exit()))
}

fn parse(args: Vec<OsString>) -> Option<Result<Job, clap::Error>> {
    let first = args.get(1)?;
    if first != job::SYNC && first != job::CHANGED && first != job::SECRET {
        return None;
    }
    Some(JobArgs::try_parse_from(args).map(|a| a.job))
}

/// Runs `job` and returns its exit status.
pub fn run(job: &Job) -> ExitCode {
    match job {
        Job::Sync(sync_job) => match sync(sync_job) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}", one_line(&e));
                ExitCode::from(job::FAILED)
            }
        },
        Job::Changed(changed_job) => match changed(changed_job) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("warning: {}: {}", job::NOT_REFRESHED, one_line(&e));
                ExitCode::from(job::FAILED)
            }
        },
        Job::Secret(secret_job) => secret(secret_job),
    }
}

/// A libvirt secret's value, written on stdout and nowhere else; a failure is one `error:`
/// line on stderr without the value.
fn secret(job: &SecretJob) -> ExitCode {
    let failed = |message: String| {
        eprintln!("error: {message}");
        ExitCode::from(job::FAILED)
    };
    let secrets = match crate::bridge::LibvirtSecrets::new(&job.uri, job.token.as_deref()) {
        Ok(s) => s,
        Err(e) => return failed(one_line(&e)),
    };
    match secrets.passphrase(Some(&job.secret())) {
        Ok(passphrase) => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(passphrase.bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => failed(format!("cannot hand the secret over: {e}")),
            }
        }
        // libvirt's own words for a failed call: `qpool` names the URI around them.
        Err(crate::pool::SecretError::Libvirt { source, .. }) => failed(source.to_string()),
        Err(e) => failed(one_line(&e)),
    }
}

/// A whole sync: prints what was done; each pool that failed gets a warning line, and the
/// whole job fails.
fn sync(job: &SyncJob) -> Result<(), BridgeError> {
    let pools = stored_pools(&job.pools, &job.default_pool_dir)?;
    let bridge = Bridge::connect(&job.settings())?;
    let report = bridge.sync(&pools);
    let mut stdout = std::io::stdout().lock();
    for done in &report.done {
        let _ = writeln!(stdout, "{done}");
    }
    // The lines of what was done come before the warnings, as one reads them.
    let _ = stdout.flush();
    for (name, e) in &report.failed {
        eprintln!("warning: pool '{name}': {}", one_line(e));
    }
    report.result()
}

/// After a change: refreshes the pool's mirror (defining it when missing); what was done
/// goes to the log.
fn changed(job: &ChangedJob) -> Result<(), BridgeError> {
    let done = Bridge::connect(&job.settings())?.changed(&job.pool())?;
    done.iter().for_each(|d| log::info!("{d}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::bridge::{Mirrored, Settings};

    fn argv(head: &[&str], job: &Job) -> Vec<OsString> {
        head.iter()
            .map(OsString::from)
            .chain(job.to_args())
            .collect()
    }

    /// What `qpool` writes, qpoold reads back unchanged: the contract of `bridge::job`
    /// against qpoold's parser.
    #[test]
    fn qpoold_parses_back_every_job_qpool_writes() {
        let uuid = uuid::Uuid::parse_str("298b18be-8fe0-4134-8044-8b5e03b856c4").unwrap();
        let settings = |prefix: &str| Settings {
            uri: "qemu+unix:///system?socket=/tmp/a b/sock".into(),
            prefix: prefix.into(),
        };
        let pool = |uuid, autostart, active| Mirrored {
            name: "-odd name".into(),
            uuid,
            target: PathBuf::from("/srv/--target=x"),
            autostart,
            active,
        };
        let jobs = [
            Job::sync(
                &settings(""),
                Path::new("/etc/qpool/storage"),
                Path::new("/i"),
            ),
            Job::sync(&settings("-q-"), Path::new("-defs"), Path::new("/var/x y")),
            Job::changed(&settings(""), &pool(None, false, true)),
            Job::changed(&settings("qpool-"), &pool(Some(uuid), true, false)),
            Job::secret(
                "secret:///system",
                &crate::xml::SecretRef::Uuid(uuid.to_string()),
                None,
            ),
            Job::secret(
                "-u",
                &crate::xml::SecretRef::Usage("/v/--x y".into()),
                Some(Path::new("/proc/1/root/run/--t x")),
            ),
        ];
        for job in jobs {
            let parsed = parse(argv(&["qpoold"], &job))
                .expect("a job line")
                .unwrap_or_else(|e| panic!("{job:?}: {e}"));
            assert_eq!(parsed, job);
        }
    }

    #[test]
    fn only_a_first_argument_naming_a_job_makes_a_job() {
        let settings = Settings {
            uri: "x".into(),
            prefix: String::new(),
        };
        let job = Job::sync(&settings, Path::new("/d"), Path::new("/i"));
        // The daemon's own options: the daemon's parser (which refuses a job after them).
        assert!(parse(argv(&["qpoold", "--timeout", "5"], &job)).is_none());
        assert!(parse(vec!["qpoold".into()]).is_none());
        assert!(
            crate::daemon::Args::try_parse_from(argv(&["qpoold", "--timeout", "5"], &job)).is_err()
        );
        // A job line without what the job needs is a usage error.
        let short = ["qpoold", job::CHANGED, "--uri=x"]
            .map(OsString::from)
            .to_vec();
        assert!(parse(short).unwrap().is_err());
    }
}
