//! `organizeOutputBy=Patient`: output files made of patient blocks. Each block is a
//! `Parameters` header naming the patient (`header` -> `Patient/{id}`), then the Patient, then
//! the other resources of that patient's compartment. A resource in several compartments (a
//! Group, an Encounter with two patients) is written in each of their blocks. Resources in no
//! patient compartment (Organization, Medication... in a system export) go in a last file
//! without a header.
//!
//! The worker meets resources in log order, not patient order, so each line goes to an
//! unlinked scratch file and only its offset is kept per patient (a few bytes per resource);
//! the files are then written block by block, reading the lines back.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;

use serde_json::json;

use super::storage::ExportStorage;

/// Patient blocks per output file.
pub const PATIENTS_PER_FILE: usize = 1000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: u64,
    len: u32,
}

pub struct PatientBlocks {
    spill: BufWriter<File>,
    offset: u64,
    /// patient id -> (its Patient resource, the other resources).
    blocks: BTreeMap<String, (Option<Entry>, Vec<Entry>)>,
    unattached: Vec<Entry>,
}

impl PatientBlocks {
    pub fn new(scratch: File) -> Self {
        Self {
            spill: BufWriter::with_capacity(256 * 1024, scratch),
            offset: 0,
            blocks: BTreeMap::new(),
            unattached: Vec::new(),
        }
    }

    /// Records one resource line for the blocks of `patients` (none: the last file).
    pub fn add(&mut self, patients: &[String], is_patient: bool, line: &[u8]) -> io::Result<()> {
        let len = u32::try_from(line.len())
            .map_err(|_| io::Error::other("a resource over 4 GiB cannot be exported"))?;
        self.spill.write_all(line)?;
        let entry = Entry {
            offset: self.offset,
            len,
        };
        self.offset += u64::from(len);
        if patients.is_empty() {
            self.unattached.push(entry);
        }
        for p in patients {
            let block = self.blocks.entry(p.clone()).or_default();
            if is_patient {
                block.0 = Some(entry);
            } else {
                block.1.push(entry);
            }
        }
        Ok(())
    }

    /// Writes the output files; returns (file name, lines) of each.
    pub fn write(self, storage: &ExportStorage, job_id: &str) -> io::Result<Vec<(String, u64)>> {
        let scratch = self.spill.into_inner().map_err(|e| e.into_error())?;
        let mut buffer = Vec::new();
        let mut copy = |out: &mut dyn Write, e: Entry| -> io::Result<()> {
            buffer.resize(e.len as usize, 0);
            scratch.read_exact_at(&mut buffer, e.offset)?;
            out.write_all(&buffer)?;
            out.write_all(b"\n")
        };
        let mut files = Vec::new();
        let blocks: Vec<_> = self.blocks.into_iter().collect();
        for (n, chunk) in blocks.chunks(PATIENTS_PER_FILE).enumerate() {
            let name = format!("Patient-blocks-{}.ndjson", n + 1);
            let mut part = storage.create(job_id, &name)?;
            let mut lines = 0u64;
            for (patient, (own, others)) in chunk {
                let header = json!({
                    "resourceType": "Parameters",
                    "parameter": [{"name": "header", "valueReference": {"reference": format!("Patient/{patient}")}}],
                });
                serde_json::to_writer(&mut part, &header).map_err(io::Error::other)?;
                part.write_all(b"\n")?;
                lines += 1;
                for e in own.iter().chain(others) {
                    copy(&mut part, *e)?;
                    lines += 1;
                }
            }
            part.commit()?;
            files.push((name, lines));
        }
        if !self.unattached.is_empty() {
            let name = "Patient-blocks-none.ndjson".to_owned();
            let mut part = storage.create(job_id, &name)?;
            for e in &self.unattached {
                copy(&mut part, *e)?;
            }
            part.commit()?;
            files.push((name, self.unattached.len() as u64));
        }
        Ok(files)
    }
}
