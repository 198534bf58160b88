//! The `pigeon-dns` binary: arguments, logging, and the exit status the
//! command returns ([`ExitCode`], one enum for every status the contract
//! lists). Everything else lives in the library: the commands in
//! `pigeon_dns::cli`, the daemon in `pigeon_dns::app`.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use pigeon_dns::cli::{self, ExitCode};

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

// One variant per command of `pigeon_dns::cli`; `drain` and `undrain` join here.
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
    let args = Cli::parse();
    init_logging(args.log_format, args.log_level.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::Failure;
        }
    };
    let config = &args.config;
    match args.command {
        Command::Run { dry_run } => runtime.block_on(cli::run(config, dry_run)),
        Command::Check => cli::check(config),
        Command::Probe => runtime.block_on(cli::probe(config)),
        Command::Plan { apply } => runtime.block_on(cli::plan(config, apply)),
        Command::Status => runtime.block_on(cli::status(config)),
    }
}
