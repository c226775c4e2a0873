//! `ringback-bench`: the load tool (`load`), the page-load benchmark (`pageload`), the fleet
//! (`fleet`) and the floor (`floor`).

use clap::Parser;
use ringback_bench::args::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e.to_string()),
    };
    let report = runtime.block_on(async move {
        match cli.command {
            Command::Load(args) => ringback_bench::load::run(&args).await,
            Command::Pageload(args) => ringback_bench::pageload::run(&args).await,
            Command::Fleet(args) => ringback_bench::fleet::run(&args).await,
            // A loop of its own, on this thread: the runtime stays idle.
            Command::Floor(args) => ringback_bench::floor::run(&args),
        }
    });
    match report {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("ringback-bench: {message}");
    ExitCode::FAILURE
}
