//! The export itself: from a job's request to NDJSON files and a manifest, reading the event
//! log and nothing else.
//!
//! The window is the log after `since_position` (or from the start) up to the job's position.
//! Pass one finds the last event of each resource in the window (positions only, so memory is
//! a few dozen bytes per resource); pass two reads the window again and writes each resource's
//! last version if it is in the population. Pass two pipelines reading (async) and
//! materializing (a blocking thread: JSON parsing, compartment checks, file writes) through a
//! small bounded channel, which keeps both cores busy and memory bounded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Map, Value};
use sphere_domain::fhir::compartment::{in_patient_compartment, patient_compartment_params};
use sphere_domain::fhir::search_parameters::{search_parameter, SearchParamDef};
use sphere_domain::fhir::search_value::{parse_reference, RefTarget};
use sphere_domain::resource::{
    is_resource_event, RESOURCE_CREATED, RESOURCE_DELETED, RESOURCE_UPDATED,
};

use super::by_patient::PatientBlocks;
use super::job::{ExportLevel, ExportRequested, OutputFormat};
use super::parquet::{ParquetOutput, Row};
use super::scopes::{ExportScopes, TypeAccess};
use super::storage::{ExportStorage, PartFile};
use super::type_filter::TypeFilters;
use crate::eventlog::{
    Direction, EventFilter, EventLog, EventLogError, Position, RecordedEvent, StreamStart,
};

/// Events per log read.
const PAGE: usize = 4096;
/// Versions per backwards read of a Group's stream (the newest is nearly always the one).
const PAGE_BACKWARDS: usize = 8;

/// Manifest extension key holding the log position the export read to.
pub const POSITION_EXTENSION: &str =
    "https://sphere-ehr.dev/fhir/StructureDefinition/export-position";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Log(#[from] EventLogError),
    #[error("writing export files failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("Group/{0} does not exist at the export's position")]
    GroupNotFound(String),
    #[error("the export was cancelled")]
    Cancelled,
    #[error("the export worker stopped unexpectedly")]
    Worker,
    #[error("the job's _typeFilter no longer parses: {0}")]
    TypeFilter(String),
}

/// What the export produced, before it becomes a manifest.
#[derive(Debug, Default, Clone)]
pub struct ExportFiles {
    /// (resource type, file name, count), in type order; the type is empty for files of
    /// patient blocks (`organizeOutputBy=Patient`), which hold many types.
    pub output: Vec<(String, String, u64)>,
    /// The deleted-resources file and its count, when there were deletions.
    pub deleted: Option<(String, u64)>,
}

/// The members of `Group/{id}` as of `end`: the `Patient` ids of `member.entity`, leaving out
/// members marked inactive. Reads the Group's stream backwards from its newest version, so
/// usually one event.
pub async fn group_members(
    log: &dyn EventLog,
    group_id: &str,
    end: u64,
    base: &str,
) -> Result<Option<HashSet<String>>, ExportError> {
    let stream = sphere_domain::resource::stream_name("Group", group_id);
    let mut last: Option<RecordedEvent> = None;
    let mut from = StreamStart::Origin;
    'read: loop {
        let page = log
            .read_stream(&stream, Direction::Backwards, from, PAGE_BACKWARDS)
            .await?;
        let n = page.len();
        for e in page {
            if e.position.0 <= end {
                last = Some(e);
                break 'read;
            }
            match e.revision.checked_sub(1) {
                Some(before) => from = StreamStart::Revision(before),
                None => break 'read,
            }
        }
        if n < PAGE_BACKWARDS {
            break;
        }
    }
    let Some(event) = last else {
        return Ok(None);
    };
    if event.event_type == RESOURCE_DELETED {
        return Ok(None);
    }
    let group: Value = serde_json::from_slice(&event.data)
        .map_err(|_| EventLogError::Corrupt(format!("{stream} holds a body that is not JSON")))?;
    let members = group["member"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .filter(|m| m["inactive"].as_bool() != Some(true))
                .filter_map(|m| patient_reference(&m["entity"], base))
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(members))
}

/// The patient id of a Reference (`{"reference": "Patient/1"}`, versioned, or absolute under
/// this server's FHIR base `base`), read as reference search reads it.
fn patient_reference(value: &Value, base: &str) -> Option<String> {
    let reference = value
        .get("reference")
        .and_then(Value::as_str)
        .or_else(|| value.as_str())?;
    match parse_reference(reference, base)? {
        RefTarget::Local { resource_type, id } if resource_type == "Patient" => Some(id),
        _ => None,
    }
}

/// Up to this many types, the log read filters by category; beyond, it reads every event in
/// position order and filters here. SQLite answers a long `category IN (...)` through the
/// category index and sorts each page, which made every page cost the whole window.
const MAX_FILTERED_CATEGORIES: usize = 4;

/// The resource types an export reads, and the log filter selecting their events.
fn scope(req: &ExportRequested) -> (Option<HashSet<String>>, EventFilter) {
    let (types, filter) = scope_types(req);
    match &types {
        Some(t) if t.len() <= MAX_FILTERED_CATEGORIES => (types, filter),
        _ => (types, EventFilter::all()),
    }
}

fn scope_types(req: &ExportRequested) -> (Option<HashSet<String>>, EventFilter) {
    let compartment_only = req.level != ExportLevel::System || !req.patients.is_empty();
    if !req.types.is_empty() {
        let types: HashSet<String> = req
            .types
            .iter()
            .filter(|t| !compartment_only || in_patient_compartment(t))
            .cloned()
            .collect();
        let filter = EventFilter::categories(types.iter().cloned());
        (Some(types), filter)
    } else if compartment_only {
        let mut types: HashSet<String> =
            sphere_domain::fhir::compartment::patient_compartment_types()
                .into_iter()
                .map(str::to_owned)
                .collect();
        types.insert("Patient".into());
        let filter = EventFilter::categories(types.iter().cloned());
        (Some(types), filter)
    } else {
        (
            None,
            EventFilter::event_types([RESOURCE_CREATED, RESOURCE_UPDATED, RESOURCE_DELETED]),
        )
    }
}

/// Runs an export: writes its files to `storage` under `req.job_id` and says what it wrote.
pub async fn run(
    log: Arc<dyn EventLog>,
    storage: Arc<ExportStorage>,
    fhir_base: &str,
    req: &ExportRequested,
    cancel: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
) -> Result<ExportFiles, ExportError> {
    let Some(end) = req.position else {
        return Ok(ExportFiles::default());
    };
    let population: Option<HashSet<String>> = match &req.level {
        ExportLevel::Group { id } => Some(
            group_members(log.as_ref(), id, end, fhir_base)
                .await?
                .ok_or_else(|| ExportError::GroupNotFound(id.clone()))?,
        ),
        _ if !req.patients.is_empty() => Some(req.patients.iter().cloned().collect()),
        _ => None,
    };
    let (types, filter) = scope(req);
    let start = req.since_position.map(Position);

    // Pass one: the last event of each resource in the window.
    let mut latest: HashMap<String, u64> = HashMap::new();
    let mut after = start;
    'scan: loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(ExportError::Cancelled);
        }
        let page = log.read_all_heads(after, &filter, PAGE).await?;
        let n = page.len();
        for e in &page {
            if !in_window(e, end, req.until_ms) {
                break 'scan;
            }
            if is_resource_event(&e.event_type)
                && types.as_ref().is_none_or(|t| t.contains(e.category()))
            {
                latest.insert(e.stream.clone(), e.position.0);
            }
        }
        progress.fetch_add(n as u64, Ordering::Relaxed);
        match page.last() {
            Some(last) if n == PAGE => after = Some(last.position),
            _ => break,
        }
    }

    // Pass two: the reader feeds pages to the materializer on a blocking thread.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<RecordedEvent>>(4);
    let reader = {
        let log = log.clone();
        let cancel = cancel.clone();
        let until = req.until_ms;
        tokio::spawn(async move {
            let mut after = start;
            loop {
                if cancel.load(Ordering::Relaxed) {
                    return Ok::<(), EventLogError>(());
                }
                let mut page = log.read_all(after, &filter, PAGE).await?;
                let n = page.len();
                let next = page.last().map(|e| e.position);
                let full_page = n == PAGE;
                let before = page.len();
                page.retain(|e| in_window(e, end, until));
                let reached_end = page.len() < before;
                if !page.is_empty() && tx.send(page).await.is_err() {
                    return Ok(());
                }
                if reached_end || !full_page {
                    return Ok(());
                }
                after = next;
            }
        })
    };
    let filters =
        TypeFilters::parse(&req.type_filters, fhir_base).map_err(ExportError::TypeFilter)?;
    let scopes = req
        .access
        .as_ref()
        .map(|access| ExportScopes::new(&req.client_id, access));
    let by_patient = if req.organize_by_patient {
        Some(PatientBlocks::new(storage.scratch(&req.job_id)?))
    } else {
        None
    };
    let mut materializer = Materializer {
        filters,
        scopes,
        by_patient,
        latest,
        population,
        elements: Elements::parse(&req.elements),
        storage: storage.clone(),
        job_id: req.job_id.clone(),
        writers: BTreeMap::new(),
        format: req.output_format,
        deleted: Vec::new(),
        keep_deleted: req.since_position.is_some() || req.since_ms.is_some(),
        params: HashMap::new(),
        roots: HashMap::new(),
        base: fhir_base.to_owned(),
    };
    let materializer = tokio::task::spawn_blocking({
        let cancel = cancel.clone();
        let progress = progress.clone();
        move || -> Result<Materializer, ExportError> {
            while let Some(page) = rx.blocking_recv() {
                if cancel.load(Ordering::Relaxed) {
                    return Err(ExportError::Cancelled);
                }
                progress.fetch_add(page.len() as u64, Ordering::Relaxed);
                for event in page {
                    materializer.accept(event)?;
                }
            }
            Ok(materializer)
        }
    })
    .await
    .map_err(|_| ExportError::Worker)?;
    reader.await.map_err(|_| ExportError::Worker)??;
    let mut materializer = materializer?;
    if cancel.load(Ordering::Relaxed) {
        return Err(ExportError::Cancelled);
    }

    // Deletions: the deleted version is only `{resourceType, id}`, so whether it belonged to
    // the population is decided by the version before it. Deletions are rare; one read each.
    let mut deleted = Vec::new();
    for (stream, revision) in std::mem::take(&mut materializer.deleted) {
        let Some((resource_type, id)) = stream.split_once('-') else {
            continue;
        };
        let keep = match &materializer.population {
            None => true,
            Some(population) if resource_type == "Patient" => population.contains(id),
            Some(_) if revision == 0 => false,
            Some(_) => {
                let before = log
                    .read_stream(
                        &stream,
                        Direction::Backwards,
                        StreamStart::Revision(revision - 1),
                        1,
                    )
                    .await?;
                before.first().is_some_and(|e| {
                    e.event_type != RESOURCE_DELETED
                        && serde_json::from_slice::<Value>(&e.data)
                            .is_ok_and(|v| materializer.in_population(resource_type, id, &v))
                })
            }
        };
        if keep {
            deleted.push((resource_type.to_owned(), id.to_owned()));
        }
    }

    let storage_for_commit = storage.clone();
    let job_id = req.job_id.clone();
    tokio::task::spawn_blocking(move || -> Result<ExportFiles, ExportError> {
        let mut files = ExportFiles::default();
        if let Some(blocks) = materializer.by_patient {
            for (name, count) in blocks.write(storage_for_commit.as_ref(), &job_id)? {
                files.output.push((String::new(), name, count));
            }
        }
        for (resource_type, output) in materializer.writers {
            let (name, count) = output.commit(&resource_type)?;
            files.output.push((resource_type, name, count));
        }
        if !deleted.is_empty() {
            let name = "Bundle-deleted.ndjson";
            let mut part = storage_for_commit.create(&job_id, name)?;
            for (resource_type, id) in &deleted {
                let bundle = json!({
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [{"request": {"method": "DELETE", "url": format!("{resource_type}/{id}")}}],
                });
                serde_json::to_writer(&mut part, &bundle).map_err(std::io::Error::other)?;
                part.write_all(b"\n")?;
            }
            part.commit()?;
            files.deleted = Some((name.to_owned(), deleted.len() as u64));
        }
        Ok(files)
    })
    .await
    .map_err(|_| ExportError::Worker)?
}

/// Is `event` inside the window that ends at position `end` (and `_until`)? Positions and
/// commit times only grow, so the first event outside ends the read.
fn in_window(event: &RecordedEvent, end: u64, until_ms: Option<i64>) -> bool {
    event.position.0 <= end && until_ms.is_none_or(|u| event.commit_ms() <= u)
}

/// Pass two's state: decides each resource's last version and writes it.
struct Materializer {
    filters: TypeFilters,
    /// The requesting token's scopes; `None` for the operator.
    scopes: Option<ExportScopes>,
    /// `organizeOutputBy=Patient`: lines go here instead of one file per type.
    by_patient: Option<PatientBlocks>,
    latest: HashMap<String, u64>,
    population: Option<HashSet<String>>,
    elements: Elements,
    storage: Arc<ExportStorage>,
    job_id: String,
    writers: BTreeMap<String, TypeOutput>,
    format: OutputFormat,
    /// (stream, revision) of resources whose last event in the window is a deletion.
    deleted: Vec<(String, u64)>,
    /// Deletions are reported only to `_since` exports (a full export just leaves them out).
    keep_deleted: bool,
    params: HashMap<String, Vec<&'static SearchParamDef>>,
    /// This server's FHIR base URL: absolute references under it are local.
    base: String,
    /// Per type, the root elements its patient compartment parameters read.
    /// `None`: a parameter not rooted at an element (the whole resource is parsed).
    roots: HashMap<String, Option<Vec<String>>>,
}

impl Materializer {
    fn accept(&mut self, event: RecordedEvent) -> Result<(), ExportError> {
        if self.latest.get(&event.stream) != Some(&event.position.0) {
            return Ok(());
        }
        let Some((resource_type, id)) = event.stream.split_once('-') else {
            return Ok(());
        };
        if event.event_type == RESOURCE_DELETED {
            if self.keep_deleted {
                self.deleted.push((event.stream.clone(), event.revision));
            }
            return Ok(());
        }
        let access = self.scopes.as_mut().map(|s| s.type_access(resource_type));
        if access == Some(TypeAccess::Nothing) {
            return Ok(());
        }
        let per_resource_scopes = access == Some(TypeAccess::EachResource);
        let filtered = self.filters.applies_to(resource_type);
        let needs_parse = self.elements.applies_to(resource_type)
            || filtered
            || per_resource_scopes
            || self.by_patient.is_some()
            || self.format == OutputFormat::Parquet
            || event.data.contains(&b'\n');
        let mut patients = Vec::new();
        let line: Vec<u8>;
        if !needs_parse && self.population.is_some() {
            // Only the population decides: parse just the elements the patient compartment is
            // read from, and write the stored JSON as it is.
            let compartment = self.compartment_elements(resource_type, &event)?;
            if !self.in_population(resource_type, id, &compartment) {
                return Ok(());
            }
        }
        let body: &[u8] = if needs_parse {
            let value: Value = serde_json::from_slice(&event.data).map_err(|_| {
                EventLogError::Corrupt(format!("{} holds a body that is not JSON", event.stream))
            })?;
            if self.population.is_some() && !self.in_population(resource_type, id, &value) {
                return Ok(());
            }
            if filtered && !self.filters.allows(resource_type, &value) {
                return Ok(());
            }
            if per_resource_scopes
                && !self
                    .scopes
                    .as_mut()
                    .is_some_and(|s| s.allows(resource_type, &value))
            {
                return Ok(());
            }
            if self.by_patient.is_some() {
                patients = self.patients_of(resource_type, id, &value);
            }
            if self.format == OutputFormat::Parquet {
                let patient = self
                    .patients_of(resource_type, id, &value)
                    .into_iter()
                    .next();
                let value = self.elements.subset(resource_type, value);
                let json = serde_json::to_string(&value).map_err(std::io::Error::other)?;
                let row = Row::new(
                    &value,
                    json,
                    crate::fhir::store::last_updated_ms(&event),
                    sphere_domain::resource::version_id(event.revision).to_string(),
                    patient,
                );
                return match self.output(resource_type)? {
                    TypeOutput::Parquet(file) => Ok(file.push(row)?),
                    TypeOutput::Ndjson(..) => Ok(()),
                };
            }
            let value = self.elements.subset(resource_type, value);
            line = serde_json::to_vec(&value).map_err(std::io::Error::other)?;
            &line
        } else {
            &event.data
        };
        if let Some(blocks) = &mut self.by_patient {
            blocks.add(&patients, resource_type == "Patient", body)?;
            return Ok(());
        }
        if let TypeOutput::Ndjson(writer, count) = self.output(resource_type)? {
            writer.write_all(body)?;
            writer.write_all(b"\n")?;
            *count += 1;
        }
        Ok(())
    }

    /// The output file of a type, created on its first resource.
    fn output(&mut self, resource_type: &str) -> Result<&mut TypeOutput, ExportError> {
        if !self.writers.contains_key(resource_type) {
            let name = TypeOutput::file_name(self.format, resource_type);
            let part = self.storage.create(&self.job_id, &name)?;
            let output = match self.format {
                OutputFormat::Ndjson => TypeOutput::Ndjson(part, 0),
                OutputFormat::Parquet => {
                    TypeOutput::Parquet(Box::new(ParquetOutput::new(part, resource_type)?))
                }
            };
            self.writers.insert(resource_type.to_owned(), output);
        }
        self.writers
            .get_mut(resource_type)
            .ok_or(ExportError::Worker)
    }

    /// The root elements of `event`'s resource that decide its patient compartment, as a JSON
    /// object: the other elements are skipped over, not built. The whole resource when it is
    /// not a plain JSON object of elements.
    fn compartment_elements(
        &mut self,
        resource_type: &str,
        event: &RecordedEvent,
    ) -> Result<Value, ExportError> {
        let corrupt =
            || EventLogError::Corrupt(format!("{} holds a body that is not JSON", event.stream));
        if resource_type == "Patient" {
            return Ok(Value::Null);
        }
        let roots = self
            .roots
            .entry(resource_type.to_owned())
            .or_insert_with(|| {
                let mut roots = Vec::new();
                for code in patient_compartment_params(resource_type) {
                    // Parameters without a compiled path find nothing (as `extract` has it).
                    let Some(path) =
                        search_parameter(resource_type, code).and_then(|d| d.path.as_ref())
                    else {
                        continue;
                    };
                    for steps in path.branches() {
                        match steps.first() {
                            Some(sphere_domain::fhir::search_path::Step::Field(name)) => {
                                roots.push(name.clone())
                            }
                            // A branch not rooted at an element: read the whole resource.
                            _ => return None,
                        }
                    }
                }
                roots.sort();
                roots.dedup();
                Some(roots)
            });
        let Some(roots) = roots else {
            return serde_json::from_slice(&event.data).map_err(|_| corrupt().into());
        };
        let top: HashMap<&str, &serde_json::value::RawValue> =
            match serde_json::from_slice(&event.data) {
                Ok(top) => top,
                // Escaped keys cannot be borrowed: parse it all.
                Err(_) => return serde_json::from_slice(&event.data).map_err(|_| corrupt().into()),
            };
        let mut picked = Map::new();
        for (key, raw) in top {
            // A choice element's root (`effective`) matches each of its keys (`effectiveDateTime`).
            if roots.iter().any(|r| key.starts_with(r.as_str())) {
                let value: Value = serde_json::from_str(raw.get()).map_err(|_| corrupt())?;
                picked.insert(key.to_owned(), value);
            }
        }
        Ok(Value::Object(picked))
    }

    /// The patients whose compartments hold this resource (of the population, if any).
    fn patients_of(&mut self, resource_type: &str, id: &str, resource: &Value) -> Vec<String> {
        let mut patients: Vec<String> = if resource_type == "Patient" {
            vec![id.to_owned()]
        } else {
            compartment_params(&mut self.params, resource_type)
                .iter()
                .filter_map(|def| def.extract(resource))
                .flatten()
                .filter_map(|f| patient_reference(f.value, &self.base))
                .collect()
        };
        if let Some(population) = &self.population {
            patients.retain(|p| population.contains(p));
        }
        patients.sort();
        patients.dedup();
        patients
    }

    /// Is this resource in the compartment of a patient of the population? A Patient by its
    /// own id only (a `link` to a member does not make another Patient a member).
    fn in_population(&mut self, resource_type: &str, id: &str, resource: &Value) -> bool {
        let Some(population) = &self.population else {
            return true;
        };
        if resource_type == "Patient" {
            return population.contains(id);
        }
        compartment_params(&mut self.params, resource_type)
            .iter()
            .any(|def| {
                def.extract(resource).is_some_and(|found| {
                    found.iter().any(|f| {
                        patient_reference(f.value, &self.base)
                            .is_some_and(|p| population.contains(&p))
                    })
                })
            })
    }
}

/// The Patient-compartment search parameters of `resource_type`, looked up once per type.
fn compartment_params<'a>(
    cache: &'a mut HashMap<String, Vec<&'static SearchParamDef>>,
    resource_type: &str,
) -> &'a [&'static SearchParamDef] {
    cache.entry(resource_type.to_owned()).or_insert_with(|| {
        patient_compartment_params(resource_type)
            .iter()
            .filter_map(|code| search_parameter(resource_type, code))
            .collect()
    })
}

/// The output file of one type.
enum TypeOutput {
    /// An NDJSON file and its lines.
    Ndjson(Box<dyn PartFile>, u64),
    Parquet(Box<ParquetOutput>),
}

impl TypeOutput {
    fn file_name(format: OutputFormat, resource_type: &str) -> String {
        match format {
            OutputFormat::Ndjson => format!("{resource_type}.ndjson"),
            OutputFormat::Parquet => format!("{resource_type}.parquet"),
        }
    }

    /// Publishes the file; returns its name and how many resources it holds.
    fn commit(self, resource_type: &str) -> std::io::Result<(String, u64)> {
        match self {
            TypeOutput::Ndjson(part, count) => {
                part.commit()?;
                Ok((
                    TypeOutput::file_name(OutputFormat::Ndjson, resource_type),
                    count,
                ))
            }
            TypeOutput::Parquet(file) => {
                let count = file.commit()?;
                Ok((
                    TypeOutput::file_name(OutputFormat::Parquet, resource_type),
                    count,
                ))
            }
        }
    }
}

/// `_elements`: root elements to keep, for every type or for one (`Patient.name`).
#[derive(Debug, Default)]
struct Elements {
    all: HashSet<String>,
    by_type: HashMap<String, HashSet<String>>,
}

impl Elements {
    fn parse(elements: &[String]) -> Self {
        let mut parsed = Self::default();
        for e in elements {
            match e.split_once('.') {
                Some((t, element)) => {
                    parsed
                        .by_type
                        .entry(t.to_owned())
                        .or_default()
                        .insert(element.to_owned());
                }
                None => {
                    parsed.all.insert(e.clone());
                }
            }
        }
        parsed
    }

    /// Types no element names are returned whole.
    fn applies_to(&self, resource_type: &str) -> bool {
        !self.all.is_empty() || self.by_type.contains_key(resource_type)
    }

    /// Keeps the named and the mandatory elements, and tags the result SUBSETTED as FHIR asks
    /// of a partial resource.
    fn subset(&self, resource_type: &str, resource: Value) -> Value {
        if !self.applies_to(resource_type) {
            return resource;
        }
        let Value::Object(object) = resource else {
            return resource;
        };
        let typed = self.by_type.get(resource_type);
        let mut kept: Map<String, Value> = object
            .into_iter()
            .filter(|(k, _)| {
                matches!(k.as_str(), "resourceType" | "id" | "meta")
                    || self.all.contains(k)
                    || typed.is_some_and(|t| t.contains(k))
            })
            .collect();
        let meta = kept
            .entry("meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(meta) = meta {
            let tags = meta
                .entry("tag")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(tags) = tags {
                tags.push(json!({
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                    "code": "SUBSETTED",
                }));
            }
        }
        Value::Object(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_references_are_read_relative_absolute_and_versioned() {
        let base = "https://x/fhir";
        let read = |v: Value| patient_reference(&v, base);
        assert_eq!(read(json!({"reference": "Patient/a1"})), Some("a1".into()));
        assert_eq!(
            read(json!({"reference": "https://x/fhir/Patient/a1/_history/2"})),
            Some("a1".into())
        );
        // Another server's Patient is not one of ours.
        assert_eq!(
            read(json!({"reference": "https://y/fhir/Patient/a1"})),
            None
        );
        assert_eq!(read(json!({"reference": "Group/a1"})), None);
    }

    #[test]
    fn elements_keep_mandatory_and_named_elements_and_tag_the_subset() {
        let elements = Elements::parse(&["Patient.name".into()]);
        let out = elements.subset(
            "Patient",
            json!({"resourceType": "Patient", "id": "1", "name": [{"text": "A"}], "gender": "x"}),
        );
        assert!(out.get("gender").is_none());
        assert!(out.get("name").is_some());
        assert_eq!(out["meta"]["tag"][0]["code"], "SUBSETTED");
        let whole = json!({"resourceType": "Observation", "id": "2", "status": "final"});
        assert_eq!(elements.subset("Observation", whole.clone()), whole);
    }
}
