//! `cargo xtask`: the project's own tasks, written in Rust so that they need nothing but
//! cargo (the [xtask convention](https://github.com/matklad/cargo-xtask); the alias is in
//! `.cargo/config.toml`).
//!
//! - `cargo xtask run`: the whole order flow on this machine, without Docker: the three
//!   services, a database on the local `PostgreSQL` server, and `trace-view listen` as their
//!   OTLP endpoint, which prints the waterfall of every trace in the terminal. See [`run`].
//! - `cargo xtask docs`: the README's tables of environment variables, from each service's
//!   declared list. See [`docs`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod docs;
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
    Run(Box<run::Args>),
    /// Rewrite the README's environment variable tables from the services' declared lists.
    Docs(docs::Args),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Run(args) => run::run(*args).await,
        Task::Docs(args) => docs::run(&args, &run::workspace_root()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
