//! `probe`: see `probe --help`.

use clap::Parser;
use probe_user::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse(); // usage errors exit 2 with clap's message
    let result = match cli.command {
        Command::Watch(args) => probe_user::cli::watch::run(args),
        Command::Tune(args) => probe_user::cli::tune::run(args),
        Command::Record(args) => probe_user::cli::record::run(args),
        Command::Serve(args) => probe_user::cli::serve::run(args),
        Command::Diff(args) => probe_user::cli::diff::run(args),
        Command::Cleanup(args) => probe_user::cli::cleanup::run(args),
        Command::Trace(args) => probe_user::cli::trace::run(args),
        Command::Reasons(args) => probe_user::cli::reasons::run(args),
    };
    if let Err(e) = result {
        eprintln!("probe: {e}");
        std::process::exit(e.exit_code());
    }
}
