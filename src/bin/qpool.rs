//! `qpool`: the command-line face. Everything happens in [`qpool::cli::main`].

fn main() -> std::process::ExitCode {
    qpool::cli::main()
}
