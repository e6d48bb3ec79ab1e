//! `qpoold`: the daemon face. Everything happens in [`qpool::daemon::run`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    qpool::logging::init();
    let args = qpool::daemon::Args::parse();
    qpool::daemon::run(&args)
}
