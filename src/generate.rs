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
    fn merge(&mut self, other: Summary) {
        self.resources += other.resources;
        for (resource_type, n) in other.by_type {
            *self.by_type.entry(resource_type).or_insert(0) += n;
        }
    }

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
///
/// Patients are generated and serialized on all cores and written in index order, so the files
/// are byte for byte the same whatever the number of threads.
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

/// Resources of one type from one patient, as NDJSON lines.
struct Lines {
    resource_type: String,
    bytes: Vec<u8>,
    count: u64,
}

/// Runs `produce` for every patient index on a few worker threads and hands the results to
/// `consume` in index order. Work goes out in small batches so memory stays bounded.
fn for_each_patient<T: Send>(
    config: &GenerateConfig,
    produce: impl Fn(u32) -> io::Result<T> + Sync,
    mut consume: impl FnMut(u32, T) -> io::Result<()>,
) -> io::Result<()> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8)) as u32;
    let batch = workers * 8;
    let produce = &produce;
    let mut start = 0;
    while start < config.patients {
        let end = start.saturating_add(batch).min(config.patients);
        let mut results: Vec<(u32, io::Result<T>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    scope.spawn(move || {
                        (start + w..end)
                            .step_by(workers as usize)
                            .map(|i| (i, produce(i)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                // A worker can only fail by panicking; pass the panic on unchanged.
                .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        results.sort_by_key(|(i, _)| *i);
        for (index, result) in results {
            consume(index, result?)?;
        }
        start = end;
    }
    Ok(())
}

fn write_bundles(config: &GenerateConfig, out_dir: &Path, summary: &mut Summary) -> io::Result<()> {
    let mut batch = Vec::new();
    synthetic::shared_resources(config, &mut |r| batch.push(r));
    write_file(
        &out_dir.join("0-shared.json"),
        &bundle_bytes(batch, summary)?,
        summary,
    )?;
    for_each_patient(
        config,
        |index| {
            let mut batch = Vec::new();
            synthetic::patient_record(config, index, &mut |r| batch.push(r));
            let mut counts = Summary::default();
            let bytes = bundle_bytes(batch, &mut counts)?;
            Ok((bytes, counts))
        },
        |index, (bytes, counts)| {
            summary.merge(counts);
            let name = format!("1-patient-{}.json", synthetic::patient_id(config, index));
            write_file(&out_dir.join(name), &bytes, summary)
        },
    )?;
    let mut batch = Vec::new();
    synthetic::groups(config, &mut |r| batch.push(r));
    write_file(
        &out_dir.join("2-groups.json"),
        &bundle_bytes(batch, summary)?,
        summary,
    )
}

/// One transaction Bundle of `resources`, serialized, counted into `summary`.
fn bundle_bytes(resources: Vec<Value>, summary: &mut Summary) -> io::Result<Vec<u8>> {
    resources.iter().for_each(|r| summary.count(r));
    let bundle = synthetic::transaction_bundle(resources);
    let mut bytes = serde_json::to_vec(&bundle)?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn write_file(path: &Path, bytes: &[u8], summary: &mut Summary) -> io::Result<()> {
    fs::write(path, bytes)?;
    summary.files.push(path.to_owned());
    Ok(())
}

fn write_ndjson(config: &GenerateConfig, out_dir: &Path, summary: &mut Summary) -> io::Result<()> {
    let mut writers: BTreeMap<String, BufWriter<File>> = BTreeMap::new();
    let mut shared = Vec::new();
    synthetic::shared_resources(config, &mut |r| shared.push(r));
    append_lines(out_dir, &mut writers, summary, ndjson_lines(shared)?)?;
    for_each_patient(
        config,
        |index| {
            let mut record = Vec::new();
            synthetic::patient_record(config, index, &mut |r| record.push(r));
            ndjson_lines(record)
        },
        |_, lines| append_lines(out_dir, &mut writers, summary, lines),
    )?;
    let mut groups = Vec::new();
    synthetic::groups(config, &mut |r| groups.push(r));
    append_lines(out_dir, &mut writers, summary, ndjson_lines(groups)?)?;
    for (resource_type, mut writer) in writers {
        writer.flush()?;
        summary
            .files
            .push(out_dir.join(format!("{resource_type}.ndjson")));
    }
    Ok(())
}

/// Serializes resources as NDJSON lines grouped by type, keeping their order within each type.
fn ndjson_lines(resources: Vec<Value>) -> io::Result<Vec<Lines>> {
    let mut groups: Vec<Lines> = Vec::new();
    for resource in resources {
        let resource_type = resource["resourceType"].as_str().unwrap_or("unknown");
        let position = match groups.iter().position(|g| g.resource_type == resource_type) {
            Some(p) => p,
            None => {
                groups.push(Lines {
                    resource_type: resource_type.to_owned(),
                    bytes: Vec::new(),
                    count: 0,
                });
                groups.len() - 1
            }
        };
        let group = &mut groups[position];
        serde_json::to_writer(&mut group.bytes, &resource)?;
        group.bytes.push(b'\n');
        group.count += 1;
    }
    Ok(groups)
}

fn append_lines(
    out_dir: &Path,
    writers: &mut BTreeMap<String, BufWriter<File>>,
    summary: &mut Summary,
    lines: Vec<Lines>,
) -> io::Result<()> {
    for group in lines {
        let writer = match writers.entry(group.resource_type.clone()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let file = File::create(out_dir.join(format!("{}.ndjson", group.resource_type)))?;
                e.insert(BufWriter::with_capacity(256 * 1024, file))
            }
        };
        writer.write_all(&group.bytes)?;
        summary.resources += group.count;
        *summary.by_type.entry(group.resource_type).or_insert(0) += group.count;
    }
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
    fn parallel_ndjson_matches_the_sequential_stream_byte_for_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = GenerateConfig {
            patients: 21,
            seed: 5,
            ..GenerateConfig::default()
        };
        let summary = write_output(&config, dir.path(), OutputFormat::Ndjson).expect("writes");
        let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        synthetic::generate(&config, &mut |r| {
            let t = r["resourceType"].as_str().unwrap_or("unknown").to_owned();
            let bytes = expected.entry(t).or_default();
            bytes.extend(serde_json::to_vec(&r).expect("serializes"));
            bytes.push(b'\n');
        });
        assert_eq!(summary.files.len(), expected.len());
        for (t, bytes) in expected {
            let written = fs::read(dir.path().join(format!("{t}.ndjson"))).expect("reads");
            assert!(
                written == bytes,
                "{t}.ndjson differs from the sequential stream"
            );
        }
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
