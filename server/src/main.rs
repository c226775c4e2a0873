//! `ringback`: serve the feed (default) or publish to a running server.

use clap::Parser;
use ringback::config::{Cli, Command, ServeArgs};
use ringback::server::{AppState, StartError};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Publish(args)) => publish(&args),
        Some(Command::Serve(args)) => serve_command(args),
        None => serve_command(cli.serve),
    }
}

/// `ringback publish`: one message, on a small runtime.
fn publish(args: &ringback::config::PublishArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    match runtime.block_on(ringback::client::publish(args)) {
        Ok(id) => {
            println!("published id {id}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(message: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("ringback: {message}");
    ExitCode::FAILURE
}

fn serve_command(args: ServeArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours for a terminal only: piped into a file or a log collector, escape codes are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .init();
    // Every connection is a file: take all the hard limit allows.
    let files = ringback::raise_open_files_limit();
    tracing::debug!(files, "open-file limit");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&StartError::Runtime(e)),
    };
    match runtime.block_on(start(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Builds the server from its settings and serves until a signal.
async fn start(args: ServeArgs) -> Result<(), StartError> {
    let addr = args.bind_addr().map_err(StartError::Address)?;
    // cargo-leptos passes the site's layout in LEPTOS_* variables.
    let leptos = leptos::config::get_configuration(None)
        .map_err(|e| StartError::Leptos(e.to_string()))?
        .leptos_options;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    let demo = if args.site.demo {
        " (demo source on)"
    } else {
        ""
    };
    tracing::info!("Ringback is serving on http://{addr}/ and https://{addr}/{demo}");
    println!("\n  Ringback is live: open http://{addr}/ in a browser{demo}");
    println!(
        "  (https://{addr}/ serves HTTP/2; unless --tls-cert is given, its certificate is signed by\n   \
         a development authority of its own: docs/http2.md, \"Trusting the development certificate\")\n"
    );
    // A release binary must serve the hashed site cargo-leptos built: a missing or broken
    // manifest is an error here, not pages whose scripts 404.
    if !cfg!(debug_assertions) && !leptos.hash_files {
        return Err(StartError::UnhashedSite);
    }
    let manifest = ringback::AssetManifest::load(&leptos)?;
    manifest.log();
    let tls = &args.tls;
    let tls = ringback::server_config(
        tls.tls_cert.as_deref(),
        tls.tls_key.as_deref(),
        &tls.data_dir,
    )
    .map_err(|e| StartError::Tls(e.to_string()))?;
    let state = AppState::new(args, leptos)?
        .with_assets(manifest)
        .with_tls(tls);
    ringback::server::run(listener, state, ringback::signal()).await;
    Ok(())
}
