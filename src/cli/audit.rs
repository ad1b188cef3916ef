//! `sphere audit`: the access history for auditors, replayed from the log with filters, as a
//! table, NDJSON (one object per access) or Parquet. Opens the embedded log read-only, so it
//! runs beside a live server.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use sphere_domain::fhir::search_value::parse_date;

use crate::audit::replay::{self, Filter, ParquetOut, ReplayError, Table};
use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Ndjson,
    Parquet,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only accesses to this patient's data ("who saw patient X"): an id or Patient/{id}.
    #[arg(long, value_name = "ID")]
    pub patient: Option<String>,
    /// Only accesses by this app ("what did app Y touch"): a client id.
    #[arg(long, value_name = "CLIENT_ID")]
    pub client: Option<String>,
    /// Only accesses by this signed-in user (username).
    #[arg(long, value_name = "USERNAME")]
    pub user: Option<String>,
    /// From this time on (a FHIR date or dateTime: 2026-01-31, 2026-01-31T08:00:00Z).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Up to this time, inclusive of the whole date or minute given.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only these interactions (repeat or comma-separate): read, vread, search-type,
    /// history-instance, operation, $everything, bulk-export, bulk-download, token,
    /// token-revoke, login, denied, ...
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub interaction: Vec<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write here instead of standard output (required for parquet).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

fn when(flag: &str, text: &str, upper: bool) -> anyhow::Result<i64> {
    let range = parse_date(text).ok_or_else(|| {
        anyhow::anyhow!(
            "--{flag} {text:?} is not a date or dateTime like 2026-01-31 or 2026-01-31T08:00:00Z"
        )
    })?;
    Ok(if upper { range.high } else { range.low })
}

/// The filter the arguments describe, or what is wrong with them.
pub fn filter(args: &AuditArgs) -> anyhow::Result<Filter> {
    let since_ms = args
        .since
        .as_deref()
        .map(|t| when("since", t, false))
        .transpose()?;
    let until_ms = args
        .until
        .as_deref()
        .map(|t| when("until", t, true))
        .transpose()?;
    if let (Some(s), Some(u)) = (since_ms, until_ms) {
        anyhow::ensure!(s <= u, "--since is after --until");
    }
    Ok(Filter {
        patient: args
            .patient
            .as_deref()
            .map(|p| p.strip_prefix("Patient/").unwrap_or(p).to_owned()),
        client: args.client.clone(),
        user: args.user.clone(),
        since_ms,
        until_ms,
        interactions: args
            .interaction
            .iter()
            .filter(|i| !i.is_empty())
            .cloned()
            .collect(),
    })
}

pub async fn run(config: Config, args: &AuditArgs) -> anyhow::Result<()> {
    let filter = filter(args)?;
    if args.format == Format::Parquet && args.out.is_none() {
        anyhow::bail!("--format parquet writes a binary file: give --out FILE");
    }
    let sink: Box<dyn Write + Send> = match &args.out {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    let embedded = config.embedded_log();
    let data_dir = config.data_dir.clone();
    let matched = match args.format {
        Format::Ndjson => {
            replay(&config, embedded, &data_dir, &filter, |id, r, raw| {
                replay::write_ndjson(&mut out, id, &r, raw)
            })
            .await?
        }
        Format::Table => {
            let mut table = Table::new();
            let n = replay(&config, embedded, &data_dir, &filter, |_, r, _| {
                table.push(&r);
                Ok(())
            })
            .await?;
            table.write(&mut out)?;
            n
        }
        Format::Parquet => {
            let mut parquet = ParquetOut::new(&mut out)?;
            let n = replay(&config, embedded, &data_dir, &filter, |id, r, _| {
                parquet.push(id, r)
            })
            .await?;
            parquet.finish()?;
            n
        }
    };
    out.flush()?;
    eprintln!("{matched} accesses");
    Ok(())
}

async fn replay(
    config: &Config,
    embedded: bool,
    data_dir: &std::path::Path,
    filter: &Filter,
    sink: impl FnMut(&str, sphere_domain::audit::AccessRecord, &[u8]) -> Result<(), ReplayError>,
) -> anyhow::Result<u64> {
    if embedded {
        let data_dir = data_dir.to_owned();
        // Blocking SQLite reads: fine on the CLI's own runtime thread.
        Ok(tokio::task::block_in_place(|| {
            replay::replay_sqlite(&data_dir, filter, sink)
        })?)
    } else {
        let log = crate::app::open_log(config).await?;
        Ok(replay::replay_log(log.as_ref(), filter, sink).await?)
    }
}
