//! Export jobs as events: the stream `export-{job_id}` holds what was asked
//! ([`ExportRequested`]), how far the worker got, and how it ended (completed with the
//! manifest, failed, cancelled). The in-memory [`Jobs`] registry is a fold of those events,
//! rebuilt from the log at start so a restart knows every job and resumes the unfinished ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::eventlog::RecordedEvent;

pub const CATEGORY: &str = "export";
pub const EXPORT_REQUESTED: &str = "ExportRequested";
pub const EXPORT_PROGRESS: &str = "ExportProgress";
pub const EXPORT_COMPLETED: &str = "ExportCompleted";
pub const EXPORT_FAILED: &str = "ExportFailed";
pub const EXPORT_CANCELLED: &str = "ExportCancelled";

pub fn stream_name(job_id: &str) -> String {
    format!("{CATEGORY}-{job_id}")
}

/// Which population an export covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ExportLevel {
    /// `/$export`: every resource of the requested types.
    System,
    /// `/Patient/$export`: every patient's compartment (or the `patient` list).
    Patient,
    /// `/Group/{id}/$export`: the compartments of the Group's members.
    Group { id: String },
}

/// Everything a job needs to run, fixed at kick-off so that a resumed job writes the same
/// files as the first attempt would have.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportRequested {
    pub job_id: String,
    /// The kick-off URL, echoed in the manifest's `request`.
    pub request: String,
    pub level: ExportLevel,
    /// `patient` parameter ids (POST), or the token's patient for a patient-scoped client.
    #[serde(default)]
    pub patients: Vec<String>,
    /// Resource types to export; empty: every type the level allows.
    #[serde(default)]
    pub types: Vec<String>,
    /// `_elements`, as given (`Observation.code`, `id`...).
    #[serde(default)]
    pub elements: Vec<String>,
    /// `_typeFilter` queries, as validated at kick-off.
    #[serde(default)]
    pub type_filters: Vec<String>,
    /// `organizeOutputBy=Patient`: files hold patient blocks, each headed by a `Parameters`.
    #[serde(default)]
    pub organize_by_patient: bool,
    /// `_outputFormat`: NDJSON (the default) or Parquet.
    #[serde(default)]
    pub output_format: OutputFormat,
    /// The requesting token's scopes (and patient), so the worker drops what they do not
    /// allow (granular scopes too). `None`: the operator, or a job from before this was kept.
    #[serde(default)]
    pub access: Option<ExportAccess>,
    pub since_ms: Option<i64>,
    /// The exclusive log position the window starts after (resolved from `_since`).
    pub since_position: Option<u64>,
    pub until_ms: Option<i64>,
    /// The last log position the export reads (the head at kick-off); `None`: empty log.
    pub position: Option<u64>,
    /// Commit time of `position`: the manifest's `transactionTime`.
    pub transaction_ms: i64,
    /// The client that may poll, download and cancel.
    pub client_id: String,
    pub requested_ms: i64,
}

/// The format of an export's output files (deleted and error files are NDJSON whatever it is).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OutputFormat {
    #[default]
    Ndjson,
    /// `application/vnd.apache.parquet`: one Parquet file per type.
    Parquet,
}

/// The scopes an export was requested with: scope strings only, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportAccess {
    pub scopes: Vec<String>,
    pub patient: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportProgress {
    pub phase: String,
    pub resources: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportCompleted {
    pub manifest: Value,
    pub completed_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportFailed {
    /// Never PHI: the reason names types, ids of jobs and groups, and error kinds only.
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportCancelled {
    pub cancelled_ms: i64,
}

#[derive(Debug, Clone)]
pub enum JobStatus {
    Running,
    Completed(ExportCompleted),
    Failed(String),
    Cancelled,
}

/// One job as the registry knows it.
#[derive(Debug, Clone)]
pub struct ExportJob {
    pub requested: ExportRequested,
    pub status: JobStatus,
    /// Revision of the last event in the job's stream (the next append's expected revision).
    pub revision: u64,
    /// Set by DELETE; the worker checks it between pages and stops.
    pub cancel: Arc<AtomicBool>,
    /// Events examined so far, for `X-Progress`.
    pub progress: Arc<AtomicU64>,
}

impl ExportJob {
    pub fn is_running(&self) -> bool {
        matches!(self.status, JobStatus::Running)
    }

    pub fn progress(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }
}

/// Every export job, by id.
#[derive(Debug, Default, Clone)]
pub struct Jobs {
    inner: Arc<Mutex<HashMap<String, ExportJob>>>,
}

impl Jobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ExportJob>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, job_id: &str) -> Option<ExportJob> {
        self.lock().get(job_id).cloned()
    }

    pub fn running_for(&self, client_id: &str) -> usize {
        self.lock()
            .values()
            .filter(|j| j.is_running() && j.requested.client_id == client_id)
            .count()
    }

    /// The log position a completed export read to, when its `transactionTime` is exactly
    /// `since_ms`: lets `_since = transactionTime` continue at the exact position.
    pub fn position_for_transaction_time(&self, since_ms: i64) -> Option<Option<u64>> {
        self.lock()
            .values()
            .filter(|j| matches!(j.status, JobStatus::Completed(_)))
            .find(|j| j.requested.transaction_ms == since_ms)
            .map(|j| j.requested.position)
    }

    pub fn running(&self) -> Vec<ExportJob> {
        self.lock()
            .values()
            .filter(|j| j.is_running())
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<ExportJob> {
        self.lock().values().cloned().collect()
    }

    /// Folds one event of an `export-` stream into the registry.
    pub fn apply(&self, event: &RecordedEvent) {
        let job_id = event.stream_id().to_owned();
        let mut jobs = self.lock();
        match event.event_type.as_str() {
            EXPORT_REQUESTED => {
                if let Ok(requested) = event.json::<ExportRequested>() {
                    jobs.insert(
                        job_id,
                        ExportJob {
                            requested,
                            status: JobStatus::Running,
                            revision: event.revision,
                            cancel: Arc::new(AtomicBool::new(false)),
                            progress: Arc::new(AtomicU64::new(0)),
                        },
                    );
                }
            }
            other => {
                let Some(job) = jobs.get_mut(&job_id) else {
                    return;
                };
                job.revision = event.revision;
                match other {
                    EXPORT_COMPLETED => {
                        if let Ok(done) = event.json::<ExportCompleted>() {
                            job.status = JobStatus::Completed(done);
                        }
                    }
                    EXPORT_FAILED => {
                        let reason = event
                            .json::<ExportFailed>()
                            .map(|f| f.reason)
                            .unwrap_or_default();
                        job.status = JobStatus::Failed(reason);
                    }
                    EXPORT_CANCELLED => {
                        job.cancel.store(true, Ordering::Relaxed);
                        job.status = JobStatus::Cancelled;
                    }
                    _ => {}
                }
            }
        }
    }

    pub fn insert(&self, job: ExportJob) {
        self.lock().insert(job.requested.job_id.clone(), job);
    }

    pub fn update(&self, job_id: &str, change: impl FnOnce(&mut ExportJob)) {
        if let Some(job) = self.lock().get_mut(job_id) {
            change(job);
        }
    }

    pub fn remove(&self, job_id: &str) {
        self.lock().remove(job_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventlog::{EventMetadata, Position};

    fn recorded(
        stream: &str,
        revision: u64,
        event_type: &str,
        body: &impl Serialize,
    ) -> RecordedEvent {
        RecordedEvent {
            position: Position(revision + 1),
            stream: stream.into(),
            revision,
            event_id: uuid::Uuid::new_v4(),
            event_type: event_type.into(),
            data: serde_json::to_vec(body).expect("JSON").into(),
            metadata: EventMetadata::default(),
        }
    }

    #[test]
    fn the_registry_is_a_fold_of_the_job_events() {
        let requested = ExportRequested {
            job_id: "j1".into(),
            request: "https://x/fhir/r4/Group/g/$export".into(),
            level: ExportLevel::Group { id: "g".into() },
            patients: vec![],
            types: vec!["Patient".into()],
            elements: vec![],
            type_filters: vec![],
            organize_by_patient: false,
            output_format: OutputFormat::Ndjson,
            access: None,
            since_ms: None,
            since_position: None,
            until_ms: None,
            position: Some(7),
            transaction_ms: 1234,
            client_id: "c".into(),
            requested_ms: 1,
        };
        let jobs = Jobs::default();
        jobs.apply(&recorded("export-j1", 0, EXPORT_REQUESTED, &requested));
        assert!(jobs.get("j1").expect("job").is_running());
        assert_eq!(jobs.running_for("c"), 1);
        let done = ExportCompleted {
            manifest: serde_json::json!({"output": []}),
            completed_ms: 5,
        };
        jobs.apply(&recorded("export-j1", 1, EXPORT_COMPLETED, &done));
        let job = jobs.get("j1").expect("job");
        assert!(matches!(job.status, JobStatus::Completed(_)));
        assert_eq!(job.revision, 1);
        assert_eq!(jobs.position_for_transaction_time(1234), Some(Some(7)));
        jobs.apply(&recorded(
            "export-j1",
            2,
            EXPORT_CANCELLED,
            &ExportCancelled { cancelled_ms: 6 },
        ));
        assert!(matches!(
            jobs.get("j1").expect("job").status,
            JobStatus::Cancelled
        ));
    }
}
