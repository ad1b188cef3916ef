//! The `sphere` command line.

pub mod audit;
pub mod backup;
pub mod generate;
pub mod import;
pub mod log;
pub mod migrate;
pub mod rebuild;
pub mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, Overrides};

#[derive(Debug, Parser)]
#[command(
    name = "sphere",
    version,
    about = "Sphere EHR: FHIR R4 / US Core 6.1.0, SMART App Launch 2.2.0 and Bulk Data 2.0.0 on an event log"
)]
pub struct Cli {
    /// A TOML file layered over the embedded defaults (also SPHERE_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data directory (also SPHERE_DATA_DIR; default ./data).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the server.
    Serve(serve::ServeArgs),
    /// Drop a projection and replay the whole log into it.
    Rebuild(rebuild::RebuildArgs),
    /// Inspect the event log (for operators and auditors).
    Log(log::LogArgs),
    /// Replay the access history: who saw a patient, what an app touched.
    Audit(audit::AuditArgs),
    /// Copy one event log into another (sqlite:DIR -> kurrentdb://...), resumable, verified.
    Migrate(migrate::MigrateArgs),
    /// Back up the embedded store (consistent while the server runs).
    Backup(backup::BackupArgs),
    /// Restore a backup into the data directory.
    Restore(backup::RestoreArgs),
    /// Write a deterministic synthetic US Core population as Bundles or NDJSON.
    Generate(generate::GenerateArgs),
    /// Load FHIR Bundles and NDJSON files through the API's write path (validated, idempotent).
    Import(import::ImportArgs),
    /// Register and manage SMART apps.
    Apps(crate::smart::cli::AppsArgs),
    /// Rotate the authorization server's signing keys.
    Keys(crate::smart::cli::KeysArgs),
    /// Manage the user directory (patients and practitioners who sign in).
    Users(crate::smart::cli::UsersArgs),
}

impl Cli {
    /// The configuration for this invocation, or every problem with it.
    pub fn config(&self, listen: Option<String>) -> Result<Config, crate::config::ConfigErrors> {
        Config::load(&Overrides {
            config_file: self.config.clone(),
            data_dir: self.data_dir.clone(),
            listen,
        })
    }
}

/// Sets up structured logging to stderr per the configuration (RUST_LOG wins if set).
pub fn init_tracing(config: &Config) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(&config.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if config.log_format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
