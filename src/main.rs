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

// One variant per command of `pigeon_dns::cli`.
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
    /// Take a node out of DNS for maintenance, without editing the config.
    ///
    /// Writes a drain mark (a TXT record at _pigeon-dns-drain.<zone>, naming
    /// the node, the pool or *, who, when and why) to the primary, with the
    /// config's server and key. Every running pigeon-dns instance reads the
    /// marks every 500 ms; the writer then removes the node's records (within
    /// a second of this command returning). A drained node is still probed
    /// and is never published, not even when every other node is down. The
    /// mark stays until `undrain`, across restarts.
    ///
    /// Before a planned stop: `pigeon-dns drain mail1 --reason upgrade &&
    /// systemctl stop dovecot`.
    ///
    /// Exit status: 0 drained (or already drained there: nothing changed);
    /// 1 an unknown node or pool, the primary unreachable or refusing
    /// (nothing changed).
    Drain {
        /// The node, as named in the config's [[node]].
        node: String,
        /// Only this pool (its label as `status` shows it); default: every pool.
        #[arg(long)]
        pool: Option<String>,
        /// Why, for `status`, the status page and the log (one line).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Put a drained node back: remove its drain marks.
    ///
    /// Without --pool every mark of the node goes; with --pool only that
    /// pool's (a node drained in every pool must be undrained without
    /// --pool). The writer publishes the node again, as its health says,
    /// within a second. `drain = true` in the config is not lifted.
    ///
    /// Exit status: 0 undrained (or not drained: said so, nothing changed);
    /// 1 an unknown node or pool, the primary unreachable or refusing
    /// (nothing changed).
    Undrain {
        /// The node, as named in the config's [[node]].
        node: String,
        /// Only this pool's mark; default: every mark of the node.
        #[arg(long)]
        pool: Option<String>,
    },
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
        Command::Drain { node, pool, reason } => {
            runtime.block_on(cli::drain(config, &node, pool.as_deref(), &reason))
        }
        Command::Undrain { node, pool } => {
            runtime.block_on(cli::undrain(config, &node, pool.as_deref()))
        }
    }
}
