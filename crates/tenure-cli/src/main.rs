//! The `tenure` command: run a command under a distributed lock, demo and benchmark the locks.
//!
//! Built only on the `tenure` library's public API.

mod cli;
mod cmd;
mod exit;
#[cfg(test)]
mod fuzz;
mod holding;
mod logging;
mod output;
mod progress;
mod requeue;
mod signals;
mod stats;
mod supervise;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cli::options::GlobalOpts;

/// Distributed locks with leases: run a command while holding a lock or while leader, inspect,
/// demo, benchmark.
#[derive(Debug, Parser)]
#[command(name = "tenure", version, propagate_version = true)]
#[command(after_help = cli::options::global_help())]
struct Cli {
    #[command(flatten)]
    global: GlobalOpts,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Hold a lock while a command runs (or until interrupted)
    #[command(after_help = cmd::lock::AFTER_HELP)]
    Lock(cmd::lock::LockArgs),
    /// Run a command while leader of an election (or lead until interrupted); --observe follows
    #[command(after_help = cmd::elect::AFTER_HELP)]
    Elect(cmd::elect::ElectArgs),
    /// Print an election's current leader once (exit 1 if none)
    #[command(after_help = cmd::elect::LEADER_AFTER_HELP)]
    Leader(cmd::elect::LeaderArgs),
    /// Keep an ephemeral key (service registration) while a command runs (or until interrupted)
    #[command(after_help = cmd::register::AFTER_HELP)]
    Register(cmd::register::RegisterArgs),
    /// List locks and elections under a prefix: holder, token, value, waiters, TTL left
    #[command(after_help = cmd::status::AFTER_HELP)]
    Status(cmd::status::StatusArgs),
    /// Run the classic scenarios: lost updates, expiry of a crashed holder, try-lock, fail-over
    #[command(after_help = cmd::demo::AFTER_HELP)]
    Demo(cmd::demo::DemoArgs),
    /// Measure the store's floor, lock latency, contended throughput and hand-off
    #[command(after_help = cmd::bench::AFTER_HELP)]
    Bench(cmd::bench::BenchArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    // clap exits 2 on usage errors and 0 for --help/--version by itself.
    let cli = Cli::parse();
    logging::init(cli.global.verbose);
    let result = match cli.command {
        Command::Lock(args) => cmd::lock::run(&cli.global, args).await,
        Command::Elect(args) => cmd::elect::run(&cli.global, args).await,
        Command::Leader(args) => cmd::elect::leader(&cli.global, args).await,
        Command::Register(args) => cmd::register::run(&cli.global, args).await,
        Command::Status(args) => cmd::status::run(&cli.global, args).await,
        Command::Demo(args) => cmd::demo::run(&cli.global, args).await,
        Command::Bench(args) => cmd::bench::run(&cli.global, args).await,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("tenure: {}", exit::message(&err));
            ExitCode::from(exit::code_of(&err))
        }
    }
}
