//! `qpoold`: the daemon face. Everything happens in [`qpool::daemon::run`], or, for a bridge
//! job that `qpool` hands over, in [`qpool::daemon::oneshot::run`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    qpool::logging::init();
    if let Some(job) = qpool::daemon::oneshot::requested() {
        return qpool::daemon::oneshot::run(&job);
    }
    let args = qpool::daemon::Args::parse();
    qpool::daemon::run(&args)
}
