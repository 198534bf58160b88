//! The `pigeon-dns` binary: arguments, logging, exit codes. Everything else
//! lives in the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use pigeon_dns::{app, commands, config};

/// Exit status of `run` when the configuration is invalid at start (EX_USAGE),
/// so systemd's RestartPreventExitStatus=64 stops a restart loop.
const EXIT_CONFIG: u8 = 64;

/// Keeps a mail cluster's DNS round-robin in step with node health: probes
/// each node's mail protocols and sends TSIG-signed RFC 2136 updates to the
/// BIND primary, adding and removing only the records it owns.
#[derive(Parser, Debug)]
#[command(name = "pigeon-dns", version, about, long_about = None)]
struct Cli {
    /// Configuration file.
    #[arg(
        short,
        long,
        global = true,
        env = "PIGEON_DNS_CONFIG",
        default_value = "/etc/pigeon-dns/pigeon-dns.toml"
    )]
    config: PathBuf,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log level or filter (e.g. `debug`, `pigeon_dns=debug`); overrides RUST_LOG.
    #[arg(long, global = true)]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: probe, keep health, reconcile DNS, serve HTTP.
    Run {
        /// Log the updates it would send and send none.
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate the configuration and the TSIG key file (reads files only).
    Check,
    /// Run every check once and print a table; exit 1 when any failed.
    Probe,
    /// Probe once and print the UPDATE it would send, as an nsupdate script.
    Plan {
        /// Send the update (exit 0 when applied).
        #[arg(long)]
        apply: bool,
    },
    /// Ask the running daemon what it believes now.
    Status,
}

fn init_logging(format: LogFormat, level: Option<&str>) {
    let filter = match level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.log_level.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = match cli.command {
        Command::Check => commands::check(&cli.config),
        Command::Probe => runtime.block_on(commands::probe(&cli.config)),
        Command::Plan { apply } => runtime.block_on(commands::plan(&cli.config, apply)),
        Command::Status => runtime.block_on(commands::status(&cli.config)),
        Command::Run { dry_run } => return runtime.block_on(run(&cli.config, dry_run)),
    };
    ExitCode::from(code as u8)
}

/// Raises the soft limit of open files to the hard one: every target may hold
/// a watch connection besides its probes (systemd's LimitNOFILE sets both).
fn raise_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "Open file limit."),
        Err(error) => tracing::warn!(%error, "Cannot raise the open file limit."),
    }
}

async fn run(path: &std::path::Path, dry_run: bool) -> ExitCode {
    raise_file_limit();
    let full = match config::load_all(path) {
        Ok(full) => full,
        Err(errors) => {
            for e in &errors {
                tracing::error!("{}", e.located());
            }
            tracing::error!(file = %path.display(), "Invalid configuration; not starting.");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for w in &full.warnings {
        tracing::warn!("{}", w.located());
    }
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(wait_for_signal(shutdown.clone()));
    let result = app::run(full, path, dry_run, shutdown).await;
    signals.abort();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "pigeon-dns stopped.");
            ExitCode::FAILURE
        }
    }
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("Cannot install signal handlers.");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received."),
        _ = int.recv() => tracing::info!("SIGINT received."),
    }
    shutdown.cancel();
}
