//! The export worker: runs each job as a task, records how it ended as an event, restores the
//! registry from the log at start (resuming unfinished jobs from scratch: their window is fixed
//! in the request event, so a rerun writes the same files), and deletes expired files.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::export::{self, ExportError, ExportFiles, POSITION_EXTENSION};
use super::job::{
    self, ExportCancelled, ExportCompleted, ExportFailed, ExportJob, ExportProgress,
    ExportRequested, JobStatus, Jobs,
};
use super::storage::ExportStorage;
use crate::eventlog::{EventLog, EventLogError, ExpectedRevision, NewEvent};
use crate::fhir::store::{instant, now_ms};

/// Jobs running at once on this node, whatever the client: exports are heavy readers.
const PARALLEL_JOBS: usize = 2;

#[derive(Clone)]
pub struct ExportWorker {
    pub log: Arc<dyn EventLog>,
    pub storage: Arc<ExportStorage>,
    pub jobs: Jobs,
    /// `{fhir base}/bulk/files`: file URLs in manifests are absolute.
    pub files_base: String,
    pub expiry_ms: i64,
    permits: Arc<Semaphore>,
}

impl ExportWorker {
    pub fn new(
        log: Arc<dyn EventLog>,
        storage: Arc<ExportStorage>,
        files_base: String,
        expiry_ms: i64,
    ) -> Self {
        Self {
            log,
            storage,
            jobs: Jobs::default(),
            files_base,
            expiry_ms,
            permits: Arc::new(Semaphore::new(PARALLEL_JOBS)),
        }
    }

    /// Rebuilds the registry from the `export` category and resumes every unfinished job.
    pub async fn restore(&self) -> Result<usize, EventLogError> {
        let mut after = None;
        loop {
            let page = self.log.read_category(job::CATEGORY, after, 1024).await?;
            for e in &page {
                self.jobs.apply(e);
            }
            match page.last() {
                Some(last) if page.len() == 1024 => after = Some(last.position),
                _ => break,
            }
        }
        let running = self.jobs.running();
        for job in &running {
            tracing::info!(job = %job.requested.job_id, "resuming export job after restart");
            self.spawn(job.requested.job_id.clone());
        }
        Ok(running.len())
    }

    /// Records a new job and starts it.
    pub async fn submit(&self, requested: ExportRequested) -> Result<(), EventLogError> {
        let stream = job::stream_name(&requested.job_id);
        let event = NewEvent::json(job::EXPORT_REQUESTED, &requested)
            .map_err(|e| EventLogError::InvalidAppend(e.to_string()))?;
        let result = self
            .log
            .append(&stream, ExpectedRevision::NoStream, vec![event])
            .await?;
        let job_id = requested.job_id.clone();
        self.jobs.insert(ExportJob {
            requested,
            status: JobStatus::Running,
            revision: result.next_revision,
            cancel: Default::default(),
            progress: Default::default(),
        });
        self.spawn(job_id);
        Ok(())
    }

    fn spawn(&self, job_id: String) {
        let worker = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = worker.permits.clone().acquire_owned().await else {
                return;
            };
            worker.run(&job_id).await;
        });
    }

    async fn run(&self, job_id: &str) {
        let Some(job) = self.jobs.get(job_id) else {
            return;
        };
        if !job.is_running() {
            return;
        }
        let fhir_base = self.files_base.trim_end_matches("/bulk/files");
        let result = export::run(
            self.log.clone(),
            self.storage.clone(),
            fhir_base,
            &job.requested,
            job.cancel.clone(),
            job.progress.clone(),
        )
        .await;
        let outcome = match result {
            Ok(files) => {
                let completed = ExportCompleted {
                    manifest: self.manifest(&job.requested, &files),
                    completed_ms: now_ms(),
                };
                self.append(job_id, job::EXPORT_COMPLETED, &completed)
                    .await
                    .map(|()| JobStatus::Completed(completed))
            }
            Err(ExportError::Cancelled) => {
                // DELETE removed the files written until then; this removes any the worker
                // wrote between the DELETE and noticing it.
                if let Err(e) = self.storage.remove_job(job_id).await {
                    tracing::warn!(job = %job_id, error = %e, "removing a cancelled export's files failed");
                }
                return;
            }
            Err(e) => {
                // The message names the kind of failure and ids of jobs or Groups, never PHI.
                tracing::warn!(job = %job_id, error = %e, "export job failed");
                let failed = ExportFailed {
                    reason: e.to_string(),
                };
                if let Err(e) = self.storage.remove_job(job_id).await {
                    tracing::warn!(job = %job_id, error = %e, "removing a failed export's files failed");
                }
                self.append(job_id, job::EXPORT_FAILED, &failed)
                    .await
                    .map(|()| JobStatus::Failed(failed.reason))
            }
        };
        match outcome {
            Ok(status) => self.jobs.update(job_id, |j| j.status = status),
            Err(e) => {
                // Left Running in the log: the next start resumes it.
                tracing::error!(job = %job_id, error = %e, "recording the end of an export job failed");
            }
        }
    }

    /// Appends an event to the job's stream; a cancellation that won the race is not
    /// overwritten (the expected revision check refuses the append).
    async fn append<T: serde::Serialize>(
        &self,
        job_id: &str,
        event_type: &str,
        body: &T,
    ) -> Result<(), EventLogError> {
        let Some(job) = self.jobs.get(job_id) else {
            return Ok(());
        };
        let event = NewEvent::json(event_type, body)
            .map_err(|e| EventLogError::InvalidAppend(e.to_string()))?;
        let result = self
            .log
            .append(
                &job::stream_name(job_id),
                ExpectedRevision::Exact(job.revision),
                vec![event],
            )
            .await?;
        self.jobs
            .update(job_id, |j| j.revision = result.next_revision);
        Ok(())
    }

    /// Cancels (DELETE): records it, stops the worker, removes the files.
    pub async fn cancel(&self, job_id: &str) -> Result<bool, EventLogError> {
        let Some(job) = self.jobs.get(job_id) else {
            return Ok(false);
        };
        if matches!(job.status, JobStatus::Cancelled) {
            return Ok(false);
        }
        job.cancel.store(true, Ordering::Relaxed);
        let body = ExportCancelled {
            cancelled_ms: now_ms(),
        };
        loop {
            match self.append(job_id, job::EXPORT_CANCELLED, &body).await {
                Ok(()) => break,
                // The worker recorded the end meanwhile: cancel after it.
                Err(e) if e.is_wrong_expected_version() => {
                    let revision = self.log.stream_revision(&job::stream_name(job_id)).await?;
                    self.jobs
                        .update(job_id, |j| j.revision = revision.unwrap_or(j.revision));
                }
                Err(e) => return Err(e),
            }
        }
        self.jobs
            .update(job_id, |j| j.status = JobStatus::Cancelled);
        if let Err(e) = self.storage.remove_job(job_id).await {
            tracing::warn!(job = %job_id, error = %e, "removing a cancelled export's files failed");
        }
        Ok(true)
    }

    /// Records a progress note (a phase boundary), best effort.
    pub async fn note_progress(&self, job_id: &str, phase: &str, resources: u64) {
        let body = ExportProgress {
            phase: phase.into(),
            resources,
        };
        if let Err(e) = self.append(job_id, job::EXPORT_PROGRESS, &body).await {
            tracing::debug!(job = %job_id, error = %e, "export progress not recorded");
        }
    }

    /// Deletes the files of completed jobs past their expiry, every minute.
    pub async fn expire_forever(self) {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let now = now_ms();
            for job in self.jobs.all() {
                if let JobStatus::Completed(done) = &job.status {
                    if done.completed_ms + self.expiry_ms < now {
                        let id = &job.requested.job_id;
                        if let Err(e) = self.storage.remove_job(id).await {
                            tracing::warn!(job = %id, error = %e, "removing expired export files failed");
                            continue;
                        }
                        self.jobs.remove(id);
                    }
                }
            }
        }
    }

    pub fn is_expired(&self, done: &ExportCompleted) -> bool {
        done.completed_ms + self.expiry_ms < now_ms()
    }

    fn manifest(&self, req: &ExportRequested, files: &ExportFiles) -> Value {
        let url = |name: &str| format!("{}/{}/{}", self.files_base, req.job_id, name);
        let output: Vec<Value> = files
            .output
            .iter()
            .map(|(t, name, count)| {
                if t.is_empty() {
                    // A file of patient blocks holds many types: no single `type`.
                    json!({"url": url(name), "count": count})
                } else {
                    json!({"type": t, "url": url(name), "count": count})
                }
            })
            .collect();
        let deleted: Vec<Value> = files
            .deleted
            .iter()
            .map(|(name, count)| json!({"type": "Bundle", "url": url(name), "count": count}))
            .collect();
        let mut manifest = json!({
            "transactionTime": instant(req.transaction_ms),
            "request": req.request,
            "requiresAccessToken": true,
            "output": output,
            "deleted": deleted,
            "error": [],
            "extension": {POSITION_EXTENSION: req.position},
        });
        if req.organize_by_patient {
            manifest["outputOrganizedBy"] = json!("Patient");
        }
        manifest
    }
}
