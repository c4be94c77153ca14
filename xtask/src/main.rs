//! `cargo xtask`: the project's own tasks, written in Rust so that they need nothing but
//! cargo (the [xtask convention](https://github.com/matklad/cargo-xtask); the alias is in
//! `.cargo/config.toml`).
//!
//! - `cargo xtask run`: the whole order flow on this machine, without Docker: the three
//!   services, a database on the local PostgreSQL server, and `trace-view listen` as their
//!   OTLP endpoint, which prints the waterfall of every trace in the terminal. See [`run`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod run;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "The project's own tasks",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build and start the whole flow locally, and print the waterfall of every trace.
    Run(run::Args),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Run(args) => run::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
