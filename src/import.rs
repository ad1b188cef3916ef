//! `sphere import` and the demo population: FHIR data files into the log through the API's own
//! write path, fast.
//!
//! Every resource is validated by the validator the API uses, written as the same
//! `{Type}-{id}` stream event a `PUT` writes (stamped by [`store::prepare_put`]), and a resource
//! whose content is already the current version writes nothing, so importing the same files
//! twice changes nothing the second time. What differs from one `PUT` per resource is only the
//! batching: resources are appended a few hundred per `append_multi`, several batches in flight,
//! so the log's group commit and the projections see large batches.
//!
//! What is read, and how it is written:
//! - a transaction Bundle of `PUT Type/id` entries is one all-or-nothing unit (one invalid entry
//!   rejects the Bundle, as the API would); any other transaction or batch Bundle (POSTs with
//!   `urn:uuid:` references, conditional or DELETE entries) goes through the API's own
//!   transaction code unchanged;
//! - batch and collection Bundles, NDJSON lines and single-resource JSON files are independent
//!   resources: an invalid one is reported and skipped, the rest are written. A resource without
//!   an `id` gets one derived from its content, so that it too imports only once.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use serde_json::{Map, Value};
use sphere_domain::fhir::{validate as validate_resource, Severity};
use sphere_domain::resource::{is_valid_id, stream_name};
use tokio::sync::mpsc;
use warp::http::Method;

use crate::app::App;
use crate::eventlog::{EventLog, EventLogError, ExpectedRevision, Position};
use crate::fhir::access::AccessContext;
use crate::fhir::interactions::bundle::bundle;
use crate::fhir::outcome::FhirError;
use crate::fhir::request::{Conditions, FhirRequest, Payload, Route};
use crate::fhir::store::{self, PreparedWrite};

/// Independent resources (NDJSON lines, batch entries) appended together.
const CHUNK: usize = 256;
/// Units being validated and written at once; enough to keep the group-commit writer busy.
const IN_FLIGHT: usize = 4;
/// Attempts at a unit that loses a race with another writer (a running server) before it is
/// reported.
const RETRIES: usize = 3;

/// How to import.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Stop at the first rejected resource (what is already written stays written).
    pub strict: bool,
}

/// Where a resource came from, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    /// 1-based line, for NDJSON.
    pub line: Option<usize>,
    /// FHIRPath of the resource within the file (`Bundle.entry[3].resource`), empty when the
    /// resource is the whole file or line.
    pub path: String,
}

/// One rejected resource (or unreadable file or line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub origin: Origin,
    /// FHIRPath of the problem (`Bundle.entry[3].resource.name[0].family`).
    pub expression: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.origin.file)?;
        if let Some(line) = self.origin.line {
            write!(f, ":{line}")?;
        }
        if !self.expression.is_empty() {
            write!(f, ": {}", self.expression)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub files: usize,
    /// Resources read (written, unchanged or rejected).
    pub resources: u64,
    pub created: u64,
    pub updated: u64,
    /// Already stored with the same content: nothing written.
    pub unchanged: u64,
    pub rejected: u64,
    pub problems: Vec<Problem>,
    /// Stopped early because of `--strict`.
    pub stopped: bool,
    /// The log position of the last write, for waiting on the projections.
    pub last_position: Option<Position>,
}

impl Report {
    fn add(&mut self, outcome: UnitOutcome) {
        self.resources += outcome.resources;
        self.created += outcome.created;
        self.updated += outcome.updated;
        self.unchanged += outcome.unchanged;
        self.rejected += outcome.rejected;
        self.problems.extend(outcome.problems);
        self.last_position = self.last_position.max(outcome.position);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {message}")]
    Path { path: String, message: String },
    #[error("the event log failed: {0}")]
    Log(#[from] EventLogError),
}

/// Progress, reported as each unit finishes.
pub trait Progress: Send + Sync {
    /// `bytes` of input and `resources` were done.
    fn advance(&self, bytes: u64, resources: u64);
}

impl Progress for () {
    fn advance(&self, _: u64, _: u64) {}
}

/// Where the import writes: the log, and the running application when there is one (needed
/// for transaction Bundles that take the API's own transaction path).
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub log: &'a dyn EventLog,
    pub app: Option<&'a App>,
}

impl<'a> Target<'a> {
    pub fn app(app: &'a App) -> Self {
        Self {
            log: app.log.as_ref(),
            app: Some(app),
        }
    }
}

/// The data files under `paths` (files as given; folders walked for `*.json`, `*.ndjson` and
/// `*.jsonl`), each folder's files in name order, so that `sphere generate` output loads its
/// shared resources first.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ImportError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| ImportError::Path {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        if meta.is_dir() {
            walk(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), ImportError> {
    let error = |e: std::io::Error| ImportError::Path {
        path: dir.display().to_string(),
        message: e.to_string(),
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(error)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(error)?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            walk(&entry, files)?;
        } else if matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("json" | "ndjson" | "jsonl")
        ) {
            files.push(entry);
        }
    }
    Ok(())
}

/// Imports `files` (see [`collect_files`]).
pub async fn import_files(
    target: Target<'_>,
    files: &[PathBuf],
    options: Options,
    progress: &dyn Progress,
) -> Result<Report, ImportError> {
    let (sender, receiver) = mpsc::channel::<(Unit, u64)>(IN_FLIGHT * 2);
    let owned: Vec<PathBuf> = files.to_vec();
    // Files are read and parsed on a blocking thread while earlier units are being written.
    let reader = tokio::task::spawn_blocking(move || {
        for file in owned {
            if read_file(&file, &sender).is_err() {
                break; // the receiver stopped (strict mode)
            }
        }
    });
    let mut report = Report {
        files: files.len(),
        ..Report::default()
    };
    run_units(
        target,
        tokio_stream::wrappers::ReceiverStream::new(receiver),
        options,
        progress,
        &mut report,
    )
    .await?;
    let _ = reader.await;
    Ok(report)
}

/// Imports resources already in memory (the demo population) as independent resources.
pub async fn import_resources(
    target: Target<'_>,
    source: &str,
    resources: Vec<Value>,
    options: Options,
) -> Result<Report, ImportError> {
    let mut units = Vec::new();
    let mut items = Vec::with_capacity(resources.len());
    for (i, resource) in resources.into_iter().enumerate() {
        let origin = Origin {
            file: source.to_owned(),
            line: None,
            path: format!("[{i}]"),
        };
        match item(resource, origin) {
            Ok(item) => items.push(item),
            Err(problem) => units.push(Unit::Broken(problem)),
        }
    }
    units.extend(chunked(items));
    let units: Vec<(Unit, u64)> = units.into_iter().map(|u| (u, 0)).collect();
    let mut report = Report::default();
    run_units(
        target,
        futures::stream::iter(units),
        options,
        &(),
        &mut report,
    )
    .await?;
    Ok(report)
}

async fn run_units(
    target: Target<'_>,
    units: impl futures::Stream<Item = (Unit, u64)>,
    options: Options,
    progress: &dyn Progress,
    report: &mut Report,
) -> Result<(), ImportError> {
    let mut outcomes = std::pin::pin!(units
        .map(|(unit, bytes)| async move { (write_unit(target, unit).await, bytes) })
        .buffered(IN_FLIGHT));
    while let Some((outcome, bytes)) = outcomes.next().await {
        let outcome = outcome?;
        progress.advance(bytes, outcome.resources);
        let failed = outcome.rejected > 0;
        report.add(outcome);
        if failed && options.strict {
            report.stopped = true;
            break;
        }
    }
    Ok(())
}

/// A resource to write.
struct Item {
    origin: Origin,
    resource_type: String,
    id: String,
    resource: Map<String, Value>,
}

/// What is written together.
enum Unit {
    /// All or nothing: a transaction Bundle of `PUT Type/id` entries.
    Atomic(Vec<Item>),
    /// Each stands alone.
    Independent(Vec<Item>),
    /// A transaction or batch Bundle for the API's own transaction code.
    Bundle(Origin, Value),
    /// Input that could not be read as a resource.
    Broken(Problem),
}

#[derive(Debug, Default)]
struct UnitOutcome {
    resources: u64,
    created: u64,
    updated: u64,
    unchanged: u64,
    rejected: u64,
    problems: Vec<Problem>,
    position: Option<Position>,
}

/// Groups independent items into chunks in which no stream appears twice (one `append_multi`
/// touches each stream once).
#[derive(Default)]
struct Chunker {
    items: Vec<Item>,
    streams: HashSet<String>,
}

impl Chunker {
    /// Adds `item`; returns a full chunk to write when one is complete.
    fn push(&mut self, item: Item) -> Option<Vec<Item>> {
        let stream = stream_name(&item.resource_type, &item.id);
        let mut full = None;
        if self.items.len() >= CHUNK || self.streams.contains(&stream) {
            full = self.finish();
        }
        self.streams.insert(stream);
        self.items.push(item);
        full
    }

    fn finish(&mut self) -> Option<Vec<Item>> {
        self.streams.clear();
        (!self.items.is_empty()).then(|| std::mem::take(&mut self.items))
    }
}

fn problem(origin: &Origin, expression: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        origin: origin.clone(),
        expression: expression.into(),
        message: message.into(),
    }
}

/// A resource value as an item: an object with a known `resourceType` and a valid (or derived)
/// id. Validation against the profiles happens when the unit is written.
fn item(resource: Value, origin: Origin) -> Result<Item, Problem> {
    let Value::Object(mut resource) = resource else {
        return Err(problem(&origin, "", "not a JSON object (a FHIR resource)"));
    };
    let Some(resource_type) = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Err(problem(&origin, "", "the resource has no resourceType"));
    };
    if !sphere_domain::fhir::is_resource_type(&resource_type) {
        let shown: String = resource_type.chars().take(64).collect();
        return Err(problem(
            &origin,
            "",
            format!("resource type {shown:?} is not supported by this server"),
        ));
    }
    let id = match resource.get("id") {
        Some(Value::String(id)) if is_valid_id(id) => id.clone(),
        Some(_) => {
            return Err(problem(
                &origin,
                format!("{resource_type}.id"),
                "not a valid FHIR id ([A-Za-z0-9-.]{1,64})",
            ))
        }
        None => {
            let id = content_id(&resource);
            resource.insert("id".into(), Value::String(id.clone()));
            id
        }
    };
    Ok(Item {
        origin,
        resource_type,
        id,
        resource,
    })
}

/// An id for a resource that came without one: a digest of its content, so the same resource
/// imported again is recognised as the same.
fn content_id(resource: &Map<String, Value>) -> String {
    let text = serde_json::to_string(resource).unwrap_or_default();
    format!("i-{}", &crate::smart::sha256_hex(&text)[..32])
}

/// Reads one file and sends its units; Err when the receiver is gone.
fn read_file(file: &Path, sender: &mpsc::Sender<(Unit, u64)>) -> Result<(), ()> {
    let name = file.display().to_string();
    let whole = Origin {
        file: name.clone(),
        line: None,
        path: String::new(),
    };
    let send = |unit: Unit, bytes: u64| sender.blocking_send((unit, bytes)).map_err(|_| ());
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let is_ndjson = matches!(
        file.extension().and_then(|e| e.to_str()),
        Some("ndjson" | "jsonl")
    );
    if is_ndjson {
        let handle = match File::open(file) {
            Ok(f) => f,
            Err(e) => return send(Unit::Broken(problem(&whole, "", e.to_string())), size),
        };
        let mut chunk = Chunker::default();
        let mut bytes = 0u64;
        for (n, line) in BufReader::with_capacity(1 << 20, handle)
            .lines()
            .enumerate()
        {
            let origin = Origin {
                line: Some(n + 1),
                ..whole.clone()
            };
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    send(Unit::Broken(problem(&origin, "", e.to_string())), bytes)?;
                    bytes = 0;
                    break;
                }
            };
            bytes += line.len() as u64 + 1;
            if line.trim().is_empty() {
                continue;
            }
            let parsed = serde_json::from_str::<Value>(&line)
                .map_err(|e| {
                    problem(
                        &origin,
                        "",
                        format!("not valid JSON (column {})", e.column()),
                    )
                })
                .and_then(|v| item(v, origin));
            match parsed {
                Ok(item) => {
                    if let Some(full) = chunk.push(item) {
                        send(Unit::Independent(full), std::mem::take(&mut bytes))?;
                    }
                }
                Err(p) => send(Unit::Broken(p), std::mem::take(&mut bytes))?,
            }
        }
        if let Some(rest) = chunk.finish() {
            send(Unit::Independent(rest), bytes)?;
        }
        return Ok(());
    }
    let value = match std::fs::read(file)
        .map_err(|e| e.to_string())
        .and_then(|b| {
            serde_json::from_slice::<Value>(&b)
                .map_err(|e| format!("not valid JSON (line {}, column {})", e.line(), e.column()))
        }) {
        Ok(v) => v,
        Err(message) => return send(Unit::Broken(problem(&whole, "", message)), size),
    };
    for unit in units_of(value, &whole) {
        send(unit, 0)?;
    }
    // Progress for a JSON file is counted once it has been handed over whole.
    send(Unit::Independent(Vec::new()), size)
}

/// The units of one JSON document. The resources are moved out of it, never copied.
fn units_of(mut value: Value, whole: &Origin) -> Vec<Unit> {
    if value["resourceType"] != "Bundle" {
        return vec![match item(value, whole.clone()) {
            Ok(item) => Unit::Independent(vec![item]),
            Err(p) => Unit::Broken(p),
        }];
    }
    let kind = value["type"].as_str().unwrap_or("").to_owned();
    let entries = match value.get("entry") {
        None => return Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return vec![Unit::Broken(problem(
                whole,
                "Bundle.entry",
                "Bundle.entry must be an array",
            ))]
        }
    };
    match kind.as_str() {
        "transaction" | "batch" if !all_plain_puts(entries) => {
            vec![Unit::Bundle(whole.clone(), value)]
        }
        "transaction" | "batch" => {
            let (items, broken) = plain_put_items(take_entries(&mut value), whole);
            let mut units: Vec<Unit> = broken.into_iter().map(Unit::Broken).collect();
            if kind == "batch" {
                units.extend(chunked(items));
            } else if units.is_empty() {
                units.push(Unit::Atomic(items));
            }
            units
        }
        _ => {
            // collection, searchset, document...: the resources themselves.
            let mut units = Vec::new();
            let mut items = Vec::new();
            for (i, mut entry) in take_entries(&mut value).into_iter().enumerate() {
                let origin = Origin {
                    path: format!("Bundle.entry[{i}].resource"),
                    ..whole.clone()
                };
                match entry.get_mut("resource").map(Value::take) {
                    Some(resource) => match item(resource, origin) {
                        Ok(item) => items.push(item),
                        Err(p) => units.push(Unit::Broken(p)),
                    },
                    None => units.push(Unit::Broken(problem(
                        &origin,
                        format!("Bundle.entry[{i}]"),
                        "the entry has no resource",
                    ))),
                }
            }
            units.extend(chunked(items));
            units
        }
    }
}

fn chunked(items: Vec<Item>) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut chunk = Chunker::default();
    for item in items {
        if let Some(full) = chunk.push(item) {
            units.push(Unit::Independent(full));
        }
    }
    if let Some(rest) = chunk.finish() {
        units.push(Unit::Independent(rest));
    }
    units
}

/// The entries of a Bundle already known to have an `entry` array, moved out of it.
fn take_entries(bundle: &mut Value) -> Vec<Value> {
    match bundle.get_mut("entry").map(Value::take) {
        Some(Value::Array(entries)) => entries,
        _ => Vec::new(),
    }
}

/// Whether every entry is a plain `PUT Type/id` of a resource with that type and id that
/// [`item`] takes (what `sphere generate` and most exports write); false when any needs the
/// API's transaction semantics.
fn all_plain_puts(entries: &[Value]) -> bool {
    let mut streams = HashSet::new();
    entries.iter().all(|entry| {
        let request = &entry["request"];
        if request["method"] != "PUT"
            || ["ifMatch", "ifNoneMatch", "ifNoneExist", "ifModifiedSince"]
                .iter()
                .any(|k| request.get(*k).is_some())
        {
            return false;
        }
        let Some(url) = request["url"].as_str() else {
            return false;
        };
        let Some((resource_type, id)) = url.split_once('/') else {
            return false;
        };
        let Some(resource) = entry.get("resource") else {
            return false;
        };
        // What `item` checks, so that every entry of an accepted Bundle becomes an item.
        resource.is_object()
            && resource["resourceType"] == resource_type
            && resource["id"] == id
            && !id.contains(['/', '?'])
            && sphere_domain::fhir::is_resource_type(resource_type)
            && is_valid_id(id)
            && streams.insert(url)
    })
}

/// The items of entries that passed [`all_plain_puts`], and a problem for any that still is
/// not one (none can be: a transaction with one is not written at all).
fn plain_put_items(entries: Vec<Value>, whole: &Origin) -> (Vec<Item>, Vec<Problem>) {
    let mut items = Vec::with_capacity(entries.len());
    let mut broken = Vec::new();
    for (i, mut entry) in entries.into_iter().enumerate() {
        let origin = Origin {
            path: format!("Bundle.entry[{i}].resource"),
            ..whole.clone()
        };
        let resource = entry.get_mut("resource").map(Value::take);
        match item(resource.unwrap_or(Value::Null), origin) {
            Ok(item) => items.push(item),
            Err(p) => broken.push(p),
        }
    }
    (items, broken)
}

/// Validates and writes one unit.
async fn write_unit(target: Target<'_>, unit: Unit) -> Result<UnitOutcome, ImportError> {
    match unit {
        Unit::Broken(p) => Ok(UnitOutcome {
            resources: 1,
            rejected: 1,
            problems: vec![p],
            ..UnitOutcome::default()
        }),
        Unit::Bundle(origin, value) => Ok(through_api(target, origin, value).await),
        Unit::Atomic(items) => write_items(target, items, true).await,
        Unit::Independent(items) => write_items(target, items, false).await,
    }
}

/// A Bundle through the API's transaction/batch code, as `POST [base]` would run it.
async fn through_api(target: Target<'_>, origin: Origin, value: Value) -> UnitOutcome {
    let entries = value["entry"].as_array().map_or(0, Vec::len) as u64;
    let fail = |message: String| UnitOutcome {
        resources: entries,
        rejected: entries,
        problems: vec![problem(&origin, "Bundle", message)],
        ..UnitOutcome::default()
    };
    let Some(app) = target.app else {
        return fail(
            "this Bundle needs the API's transaction processing (POST, conditional or DELETE \
             entries), which needs the search index; import it with the server stopped, or \
             POST it to the server"
                .into(),
        );
    };
    let request = FhirRequest {
        method: Method::POST,
        route: Route::Bundle,
        query: Vec::new(),
        conditions: Conditions::default(),
        prefer: None,
        payload: Payload::Json(value),
    };
    match bundle(app, &AccessContext::operator(), request).await {
        Ok(response) => {
            let mut outcome = UnitOutcome {
                resources: entries,
                ..UnitOutcome::default()
            };
            let body = match response.body {
                crate::fhir::format::Body::Json(v) => v,
                _ => Value::Null,
            };
            for (i, entry) in body["entry"].as_array().into_iter().flatten().enumerate() {
                let status = entry["response"]["status"].as_str().unwrap_or("");
                match status.split(' ').next() {
                    Some("201") => outcome.created += 1,
                    Some(s) if s.starts_with('2') => outcome.updated += 1,
                    _ => {
                        outcome.rejected += 1;
                        let message = entry["response"]["outcome"]["issue"][0]["diagnostics"]
                            .as_str()
                            .unwrap_or(status)
                            .to_owned();
                        outcome.problems.push(problem(
                            &origin,
                            format!("Bundle.entry[{i}]"),
                            message,
                        ));
                    }
                }
            }
            outcome
        }
        Err(e) => fail(error_text(&e)),
    }
}

fn error_text(e: &FhirError) -> String {
    match e {
        FhirError::Invalid(issues) => issues
            .iter()
            .map(|i| format!("{}: {}", i.expression, i.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// The FHIRPath of an issue inside the file: the validator names paths from the resource
/// (`Patient.name[0]`); inside a Bundle they continue from the entry.
fn within(origin: &Origin, expression: &str) -> String {
    if origin.path.is_empty() {
        return expression.to_owned();
    }
    match expression.split_once('.') {
        Some((_, rest)) => format!("{}.{rest}", origin.path),
        None => origin.path.clone(),
    }
}

/// Validation, then one `append_multi` of every resource that changes.
async fn write_items(
    target: Target<'_>,
    items: Vec<Item>,
    atomic: bool,
) -> Result<UnitOutcome, ImportError> {
    let mut outcome = UnitOutcome {
        resources: items.len() as u64,
        ..UnitOutcome::default()
    };
    if items.is_empty() {
        return Ok(outcome);
    }
    // Validation is CPU work: off the async workers.
    let (valid, problems) = tokio::task::spawn_blocking(move || validate_items(items))
        .await
        .map_err(|e| ImportError::Path {
            path: "import".into(),
            message: format!("validation panicked: {e}"),
        })?;
    let invalid = outcome.resources - valid.len() as u64;
    outcome.problems = problems;
    if atomic && invalid > 0 {
        outcome.rejected = outcome.resources;
        return Ok(outcome);
    }
    outcome.rejected = invalid;
    let valid = Arc::new(valid);
    let ctx = AccessContext::operator();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let now = store::now_ms();
        let correlation = uuid::Uuid::now_v7();
        let mut writes: Vec<PreparedWrite> = Vec::with_capacity(valid.len());
        let mut unchanged = 0;
        let streams = valid
            .iter()
            .map(|item| stream_name(&item.resource_type, &item.id))
            .collect();
        let revisions = target.log.stream_revisions(streams).await?;
        for (item, revision) in valid.iter().zip(revisions) {
            let (version, expected) = match revision {
                None => (1, ExpectedRevision::NoStream),
                Some(rev) => {
                    let same =
                        store::unchanged(target.log, &item.resource_type, &item.id, &item.resource)
                            .await
                            .map_err(|e| ImportError::Path {
                                path: item.origin.file.clone(),
                                message: e.to_string(),
                            })?;
                    if same.is_some() {
                        unchanged += 1;
                        continue;
                    }
                    (rev + 2, ExpectedRevision::Exact(rev))
                }
            };
            let metadata = store::event_metadata(&ctx, correlation, now);
            let prepared = store::prepare_put(
                &item.resource,
                &item.resource_type,
                &item.id,
                version,
                expected,
                now,
                metadata,
            )
            .map_err(|e| ImportError::Path {
                path: item.origin.file.clone(),
                message: e.to_string(),
            })?;
            writes.push(prepared);
        }
        if writes.is_empty() {
            outcome.unchanged = unchanged;
            return Ok(outcome);
        }
        let created = writes.iter().filter(|w| w.created).count() as u64;
        let written = writes.len() as u64;
        let batch = writes.into_iter().map(|w| w.write).collect();
        match target.log.append_multi(batch).await {
            Ok(results) => {
                outcome.unchanged = unchanged;
                outcome.created = created;
                outcome.updated = written - created;
                outcome.position = results.iter().map(|r| r.position).max();
                return Ok(outcome);
            }
            // Someone else (a running server) wrote one of these streams meanwhile: decide again.
            Err(EventLogError::WrongExpectedVersion { stream, .. }) if attempt < RETRIES => {
                tracing::debug!(%stream, "import lost a race; retrying the batch");
            }
            Err(EventLogError::WrongExpectedVersion { stream, .. }) => {
                let origin = valid
                    .iter()
                    .find(|i| stream_name(&i.resource_type, &i.id) == stream)
                    .map(|i| i.origin.clone())
                    .unwrap_or_default();
                outcome.rejected = outcome.resources;
                outcome.problems.push(problem(
                    &origin,
                    "",
                    format!(
                        "{stream} kept changing while importing; nothing in this batch was written"
                    ),
                ));
                return Ok(outcome);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The valid items, and a problem for each error of the others.
fn validate_items(items: Vec<Item>) -> (Vec<Item>, Vec<Problem>) {
    let mut valid = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    for item in items {
        let value = Value::Object(item.resource);
        let issues = validate_resource(&value);
        let errors: Vec<_> = issues
            .iter()
            .filter(|i| matches!(i.severity, Severity::Error | Severity::Fatal))
            .collect();
        let Value::Object(resource) = value else {
            unreachable!("wrapped just above")
        };
        if errors.is_empty() {
            valid.push(Item { resource, ..item });
        } else {
            for issue in errors {
                problems.push(problem(
                    &item.origin,
                    within(&item.origin, &issue.expression),
                    issue.message.clone(),
                ));
            }
        }
    }
    (valid, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn whole() -> Origin {
        Origin {
            file: "f.json".into(),
            ..Origin::default()
        }
    }

    #[test]
    fn a_transaction_of_plain_puts_is_one_atomic_unit() {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": "a"}, "request": {"method": "PUT", "url": "Patient/a"}},
            {"resource": {"resourceType": "Patient", "id": "b"}, "request": {"method": "PUT", "url": "Patient/b"}}
        ]});
        let units = units_of(bundle, &whole());
        assert!(matches!(units.as_slice(), [Unit::Atomic(items)] if items.len() == 2));
    }

    #[test]
    fn a_transaction_with_posts_goes_through_the_api() {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}
        ]});
        assert!(matches!(
            units_of(bundle, &whole()).as_slice(),
            [Unit::Bundle(..)]
        ));
    }

    #[test]
    fn a_collection_is_independent_resources_and_bad_entries_are_reported() {
        let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "id": "a"}},
            {"resource": {"resourceType": "NoSuchType", "id": "b"}},
            {"fullUrl": "x"}
        ]});
        let units = units_of(bundle, &whole());
        let broken: Vec<&Problem> = units
            .iter()
            .filter_map(|u| match u {
                Unit::Broken(p) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(broken.len(), 2);
        assert_eq!(broken[0].origin.path, "Bundle.entry[1].resource");
        assert!(units
            .iter()
            .any(|u| matches!(u, Unit::Independent(items) if items.len() == 1)));
    }

    #[test]
    fn a_resource_without_an_id_gets_the_same_id_every_time() {
        let r = json!({"resourceType": "Observation", "status": "final"});
        let a = item(r.clone(), whole()).expect("an item");
        let b = item(r, whole()).expect("an item");
        assert_eq!(a.id, b.id);
        assert!(is_valid_id(&a.id));
    }

    #[test]
    fn chunks_never_hold_one_stream_twice() {
        let mut chunker = Chunker::default();
        let mk = |id: &str| item(json!({"resourceType": "Patient", "id": id}), whole()).unwrap();
        assert!(chunker.push(mk("a")).is_none());
        assert!(chunker.push(mk("b")).is_none());
        let full = chunker.push(mk("a")).expect("the repeat closes the chunk");
        assert_eq!(full.len(), 2);
        assert_eq!(chunker.finish().map(|c| c.len()), Some(1));
    }

    #[test]
    fn issue_paths_continue_from_the_bundle_entry() {
        let origin = Origin {
            path: "Bundle.entry[3].resource".into(),
            ..whole()
        };
        assert_eq!(
            within(&origin, "Patient.name[0].family"),
            "Bundle.entry[3].resource.name[0].family"
        );
        assert_eq!(within(&whole(), "Patient.name"), "Patient.name");
    }
}
