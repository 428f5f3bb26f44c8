//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use guestloop_kit::auth::{Claims, PropertyScope, Role, TokenIssuer};
use guestloop_kit::config::Settings;

use crate::{bench, dev_secret, import, suite};

#[derive(Debug, Parser)]
#[command(
    name = "guestloop",
    version,
    about = "Service quality for hotel chains"
)]
pub struct Cli {
    /// Optional TOML configuration file (environment variables override it).
    #[arg(long, global = true, env = "GUESTLOOP_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole suite in one process (each service on its own port).
    Up {
        /// Load the demo chain (idempotent).
        #[arg(long)]
        demo: bool,
        /// Start from empty data (deletes the private database, or drops the schemas).
        #[arg(long)]
        fresh: bool,
    },
    /// Run one service (for containers).
    Serve {
        #[arg(value_parser = ["complaints", "crm", "facilities", "audit", "gateway"])]
        service: String,
    },
    /// Apply migrations and exit (all services, or the ones named).
    Migrate {
        #[arg(value_parser = ["complaints", "crm", "facilities", "audit", "gateway"])]
        services: Vec<String>,
    },
    /// Print a JWT valid for the running suite's configuration.
    Token {
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long, default_value = "demo-chain")]
        chain: String,
        /// Property in scope (repeatable); none means every property of the chain.
        #[arg(long = "property")]
        properties: Vec<String>,
        /// Guest id, for guest tokens.
        #[arg(long)]
        guest: Option<String>,
        #[arg(long)]
        subject: Option<String>,
        #[arg(long)]
        department: Option<String>,
    },
    /// Generate gRPC load and print throughput and latency percentiles.
    Bench(bench::BenchArgs),
    /// Import data into a running suite.
    #[command(subcommand)]
    Import(ImportCommand),
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Stays from a PMS export (CSV with a header row; see the README) into CRM, idempotent by
    /// (property_id, pms_reservation_id), with a progress bar.
    Stays {
        /// The CSV file.
        file: PathBuf,
        /// CRM's gRPC endpoint (default: the configured one).
        #[arg(long)]
        endpoint: Option<String>,
        /// Bearer token with the properties in scope (see `guestloop token`).
        #[arg(long)]
        token: String,
        /// Stays per call (1–5000).
        #[arg(long, default_value_t = 2000)]
        batch: usize,
        /// Calls in flight.
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Up { demo, fresh } => {
            dev_secret::ensure(&mut settings)?;
            settings.demo |= demo;
            suite::up(settings, fresh).await
        }
        Command::Serve { service } => suite::serve(settings, &service).await,
        Command::Migrate { services } => suite::migrate(settings, &services).await,
        Command::Token {
            role,
            chain,
            properties,
            guest,
            subject,
            department,
        } => {
            dev_secret::ensure(&mut settings)?;
            let issuer = TokenIssuer::from_settings(&settings.auth).ok_or_else(|| {
                anyhow::anyhow!("`guestloop token` needs `auth.hs256_secret`; production tokens come from your identity provider")
            })?;
            if role == Role::Guest && guest.is_none() {
                anyhow::bail!("--guest is required for --role guest");
            }
            let props = if properties.is_empty() {
                PropertyScope::all()
            } else {
                PropertyScope::Listed(properties)
            };
            let token = issuer.mint(Claims {
                sub: subject.unwrap_or_else(|| format!("dev-{}", role.as_str())),
                role,
                chain,
                props,
                guest_id: guest,
                department,
                iss: String::new(),
                aud: String::new(),
                iat: 0,
                exp: 0,
            })?;
            println!("{token}");
            Ok(())
        }
        Command::Bench(args) => bench::run(settings, args).await,
        Command::Import(ImportCommand::Stays {
            file,
            endpoint,
            token,
            batch,
            workers,
        }) => {
            let endpoint = endpoint.unwrap_or_else(|| settings.endpoint_for("crm"));
            let opened = std::fs::File::open(&file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let size = opened.metadata().ok().map(|m| m.len());
            let stats = import::import_stays(
                import::client(&endpoint, &token)?,
                std::io::BufReader::new(opened),
                size,
                batch,
                workers,
                true,
            )
            .await?;
            println!(
                "{} stays in {:.1} s ({:.0} rows/s): {} inserted, {} updated, {} unchanged, \
                 {} older than the version CRM holds; {} batches sent again after a transient \
                 refusal",
                stats.rows,
                stats.elapsed.as_secs_f64(),
                stats.rows_per_second(),
                stats.inserted,
                stats.updated,
                stats.unchanged,
                stats.stale,
                stats.resent
            );
            Ok(())
        }
    }
}
