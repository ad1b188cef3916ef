//! `sphere generate`: writes a synthetic population (see `sphere_domain::synthetic`) to a folder,
//! as one transaction Bundle per patient or as one NDJSON file per resource type.
//!
//! Only the file writing lives here; what is generated is pure domain logic.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::Value;
use sphere_domain::synthetic::{self, GenerateConfig};

/// How the population is laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// `0-shared.json` (Organizations, Practitioners, ...), then `1-patient-{id}.json` per patient,
    /// then `2-groups.json`: transaction Bundles of PUTs, named so that a sorted import loads the
    /// shared resources first.
    #[default]
    Bundles,
    /// `{ResourceType}.ndjson`, one resource per line, as Bulk Data writes them.
    Ndjson,
}

impl FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bundles" | "bundle" => Ok(Self::Bundles),
            "ndjson" => Ok(Self::Ndjson),
            other => Err(format!(
                "unknown output format {other:?} (expected \"bundles\" or \"ndjson\")"
            )),
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub patients: u32,
    /// Resources written, all types together.
    pub resources: u64,
    /// Resources written per resource type.
    pub by_type: BTreeMap<String, u64>,
    /// The files written, in the order an import should read them.
    pub files: Vec<PathBuf>,
}

impl Summary {
    fn count(&mut self, resource: &Value) {
        let resource_type = resource["resourceType"].as_str().unwrap_or("unknown");
        self.resources += 1;
        if let Some(n) = self.by_type.get_mut(resource_type) {
            *n += 1;
        } else {
            self.by_type.insert(resource_type.to_owned(), 1);
        }
    }
}

/// Generates the population described by `config` into `out_dir` (created if missing).
pub fn write_output(
    config: &GenerateConfig,
    out_dir: &Path,
    format: OutputFormat,
) -> io::Result<Summary> {
    fs::create_dir_all(out_dir)?;
    let mut summary = Summary {
        patients: config.patients,
        ..Summary::default()
    };
    match format {
        OutputFormat::Bundles => write_bundles(config, out_dir, &mut summary)?,
        OutputFormat::Ndjson => write_ndjson(config, out_dir, &mut summary)?,
    }
    Ok(summary)
}

fn write_bundles(config: &GenerateConfig, out_dir: &Path, summary: &mut Summary) -> io::Result<()> {
    let mut batch = Vec::new();
    synthetic::shared_resources(config, &mut |r| batch.push(r));
    write_bundle(&out_dir.join("0-shared.json"), &mut batch, summary)?;
    for index in 0..config.patients {
        synthetic::patient_record(config, index, &mut |r| batch.push(r));
        let name = format!("1-patient-{}.json", synthetic::patient_id(config, index));
        write_bundle(&out_dir.join(name), &mut batch, summary)?;
    }
    synthetic::groups(config, &mut |r| batch.push(r));
    write_bundle(&out_dir.join("2-groups.json"), &mut batch, summary)
}

/// Writes `batch` as one transaction Bundle and empties it (the Vec is reused for the next file).
fn write_bundle(path: &Path, batch: &mut Vec<Value>, summary: &mut Summary) -> io::Result<()> {
    batch.iter().for_each(|r| summary.count(r));
    let bundle = synthetic::transaction_bundle(std::mem::take(batch));
    let mut out = BufWriter::new(File::create(path)?);
    serde_json::to_writer(&mut out, &bundle)?;
    out.write_all(b"\n")?;
    out.flush()?;
    summary.files.push(path.to_owned());
    Ok(())
}

fn write_ndjson(config: &GenerateConfig, out_dir: &Path, summary: &mut Summary) -> io::Result<()> {
    let mut writers: BTreeMap<String, BufWriter<File>> = BTreeMap::new();
    let mut failure: Option<io::Error> = None;
    synthetic::generate(config, &mut |resource| {
        // The sink cannot return an error, so the first one is kept and the rest skipped.
        if failure.is_some() {
            return;
        }
        if let Err(e) = write_line(out_dir, &mut writers, summary, &resource) {
            failure = Some(e);
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    for (resource_type, mut writer) in writers {
        writer.flush()?;
        summary
            .files
            .push(out_dir.join(format!("{resource_type}.ndjson")));
    }
    Ok(())
}

fn write_line(
    out_dir: &Path,
    writers: &mut BTreeMap<String, BufWriter<File>>,
    summary: &mut Summary,
    resource: &Value,
) -> io::Result<()> {
    let resource_type = resource["resourceType"].as_str().unwrap_or("unknown");
    if !writers.contains_key(resource_type) {
        let file = File::create(out_dir.join(format!("{resource_type}.ndjson")))?;
        writers.insert(
            resource_type.to_owned(),
            BufWriter::with_capacity(256 * 1024, file),
        );
    }
    let writer = writers
        .get_mut(resource_type)
        .ok_or_else(|| io::Error::other("writer for a resource type vanished"))?;
    serde_json::to_writer(&mut *writer, resource)?;
    writer.write_all(b"\n")?;
    summary.count(resource);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_output_writes_one_file_per_type_with_one_resource_per_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = GenerateConfig {
            patients: 3,
            ..GenerateConfig::default()
        };
        let summary = write_output(&config, dir.path(), OutputFormat::Ndjson).expect("writes");
        assert_eq!(summary.by_type.get("Patient"), Some(&3));
        let mut lines = 0u64;
        for file in &summary.files {
            let text = fs::read_to_string(file).expect("reads");
            for line in text.lines() {
                let value: Value = serde_json::from_str(line).expect("each line is JSON");
                let stem = file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default();
                assert_eq!(value["resourceType"], stem);
                lines += 1;
            }
        }
        assert_eq!(lines, summary.resources);
    }

    #[test]
    fn bundle_output_is_identical_for_the_same_seed() {
        let config = GenerateConfig {
            patients: 2,
            ..GenerateConfig::default()
        };
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let sa = write_output(&config, a.path(), OutputFormat::Bundles).expect("writes");
        let sb = write_output(&config, b.path(), OutputFormat::Bundles).expect("writes");
        assert_eq!(sa.files.len(), 4);
        for (fa, fb) in sa.files.iter().zip(&sb.files) {
            assert_eq!(fs::read(fa).expect("reads"), fs::read(fb).expect("reads"));
        }
        let first: Value =
            serde_json::from_slice(&fs::read(&sa.files[0]).expect("reads")).expect("json");
        assert_eq!(first["type"], "transaction");
    }
}
