//! `ringback`: serve the feed (default) or publish to a running server.

use clap::Parser;
use server::config::{Cli, Command, ServeArgs};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Publish(args)) => run_client(async move {
            server::client::publish(&args)
                .await
                .map(|id| format!("published id {id}"))
        }),
        Some(Command::Pageload(args)) => {
            run_client(async move { server::pageload::run(&args).await })
        }
        Some(Command::Bench(args)) => run_client(async move { server::load::run(&args).await }),
        Some(Command::Serve(args)) => serve(args),
        None => serve(cli.serve),
    }
}

/// Runs a client subcommand on a small runtime and prints its report or its error.
fn run_client(task: impl std::future::Future<Output = Result<String, String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e.to_string()),
    };
    match runtime.block_on(task) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("ringback: {message}");
    ExitCode::FAILURE
}

fn serve(args: ServeArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours for a terminal only: piped into a file or a log collector, escape codes are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .init();
    // Every connection is a file: take all the hard limit allows.
    let files = server::metrics::raise_open_files_limit();
    tracing::debug!(files, "open-file limit");
    let addr = match args.bind_addr() {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    // cargo-leptos passes the site's layout in LEPTOS_* variables.
    let leptos = match leptos::config::get_configuration(None) {
        Ok(conf) => conf.leptos_options,
        Err(e) => return fail(&format!("Leptos configuration: {e}")),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&e.to_string()),
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => return fail(&format!("cannot listen on {addr}: {e}")),
        };
        let demo = if args.demo { " (demo source on)" } else { "" };
        tracing::info!("Ringback is serving on http://{addr}/ and https://{addr}/{demo}");
        println!("\n  Ringback is live: open http://{addr}/ in a browser{demo}");
        println!("  (https://{addr}/ serves HTTP/2 with push; its certificate is self-signed unless --tls-cert is given)\n");
        // A release binary must serve the hashed site cargo-leptos built: a missing or broken
        // manifest is an error here, not pages whose scripts 404.
        if !cfg!(debug_assertions) && !leptos.hash_files {
            return fail("release builds serve the hashed site: set LEPTOS_HASH_FILES=true (scripts/run.sh does)");
        }
        let manifest = match server::assets::AssetManifest::load(&leptos) {
            Ok(m) => m,
            Err(e) => return fail(&format!("asset manifest: {e}")),
        };
        manifest.log();
        let tls = match server::tls::server_config(
            args.tls_cert.as_deref(),
            args.tls_key.as_deref(),
            &args.data_dir,
        ) {
            Ok(t) => t,
            Err(e) => return fail(&format!("TLS: {e}")),
        };
        let state = match server::server::AppState::new(args, leptos) {
            Ok(state) => state.with_assets(manifest).with_tls(tls),
            Err(e) => return fail(&e),
        };
        server::server::run(listener, state, server::shutdown::signal()).await;
        ExitCode::SUCCESS
    })
}
