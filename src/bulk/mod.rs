//! Bulk Data Access 2.0.0 `$export`, answered from the event log.
//!
//! - [`kickoff`]: the kick-off request (headers, parameters) -> an `ExportRequested` event;
//! - [`job`]: export jobs as events in `export-{job_id}` and the registry folded from them;
//! - [`worker`]: runs jobs, records their end, resumes them after a restart, expires files;
//! - [`export`]: the export itself, log window -> NDJSON files;
//! - [`parquet`]: the same as one Parquet file per type (`_outputFormat`);
//! - [`storage`]: where files go (a local folder), written atomically.
//!
//! URLs: kick-off at `/fhir/r4/$export`, `/fhir/r4/Patient/$export`,
//! `/fhir/r4/Group/{id}/$export` (and the last two at the root); status at
//! `/fhir/r4/bulk/status/{job}`; files at `/fhir/r4/bulk/files/{job}/{file}`.

pub mod by_patient;
pub mod export;
pub mod job;
pub mod kickoff;
pub mod parquet;
pub mod scopes;
pub mod storage;
pub mod type_filter;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::{Filter, Reply};

use crate::app::App;
use crate::fhir::access::{access_context, AccessContext, Denied, Interaction};
use crate::fhir::outcome::FhirError;
use crate::fhir::store::now_ms;
use job::{ExportLevel, ExportRequested, JobStatus};
use storage::{ExportStorage, StorageConfig};
use worker::ExportWorker;

/// The `[bulk]` configuration section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BulkConfig {
    /// Where export files go; empty: `DATA_DIR/exports`.
    pub output_dir: String,
    /// How long completed exports stay downloadable.
    pub expiry_hours: u64,
    /// Running jobs one client may have; one more is refused with 429.
    pub max_jobs_per_client: usize,
    /// `local` (a folder: `output_dir`) or `s3` (an S3-compatible bucket: the `s3_` keys).
    pub storage: String,
    pub s3_bucket: String,
    /// Empty: AWS; else the S3-compatible service's URL.
    pub s3_endpoint: String,
    pub s3_region: String,
    /// Key prefix of export files in the bucket.
    pub s3_prefix: String,
    /// Allow an `http://` endpoint (tests, in-cluster services).
    pub s3_allow_http: bool,
}

impl Default for BulkConfig {
    fn default() -> Self {
        Self {
            output_dir: String::new(),
            expiry_hours: 24,
            max_jobs_per_client: 2,
            storage: "local".into(),
            s3_bucket: String::new(),
            s3_endpoint: String::new(),
            s3_region: "us-east-1".into(),
            s3_prefix: "exports".into(),
            s3_allow_http: false,
        }
    }
}

impl BulkConfig {
    /// The storage these settings describe, or what is wrong with them.
    pub fn storage(&self, data_dir: &std::path::Path) -> Result<StorageConfig, String> {
        match self.storage.as_str() {
            "local" => Ok(StorageConfig::Local {
                root: if self.output_dir.is_empty() {
                    data_dir.join("exports")
                } else {
                    PathBuf::from(&self.output_dir)
                },
            }),
            "s3" => {
                if self.s3_bucket.trim().is_empty() {
                    return Err("bulk.storage = \"s3\" needs bulk.s3_bucket".into());
                }
                let endpoint = self.s3_endpoint.trim();
                let allowed = endpoint.is_empty()
                    || endpoint.starts_with("https://")
                    || (self.s3_allow_http && endpoint.starts_with("http://"));
                if !allowed {
                    return Err(format!(
                        "bulk.s3_endpoint = {endpoint:?} must be an https:// URL (http:// only with bulk.s3_allow_http = true)"
                    ));
                }
                Ok(StorageConfig::S3 {
                    bucket: self.s3_bucket.trim().to_owned(),
                    endpoint: endpoint.to_owned(),
                    region: self.s3_region.clone(),
                    prefix: self.s3_prefix.trim_matches('/').to_owned(),
                    allow_http: self.s3_allow_http,
                    scratch: data_dir.join("export-scratch"),
                })
            }
            other => Err(format!(
                "bulk.storage = {other:?} must be \"local\" or \"s3\""
            )),
        }
    }
}

/// Seconds a client should wait between status polls.
const RETRY_AFTER_SECONDS: &str = "2";
/// Largest POST kick-off body (a Parameters resource with a patient list).
const MAX_KICKOFF_BODY: u64 = 4 * 1024 * 1024;

/// The export routes, and the worker behind them (started here: it lives as long as the routes).
pub fn routes(app: Arc<App>) -> BoxedFilter<(warp::reply::Response,)> {
    // The config was validated at start, so only the backend itself can refuse here.
    let storage = app
        .config
        .bulk
        .storage(&app.config.data_dir)
        .map_err(std::io::Error::other)
        .and_then(|config| ExportStorage::open(&config))
        .map(Arc::new)
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "export storage unavailable: exports go to a temporary folder");
            Arc::new(
                ExportStorage::local(std::env::temp_dir().join("sphere-exports"))
                    .expect("a temporary folder for exports"),
            )
        });
    let worker = ExportWorker::new(
        app.log.clone(),
        storage,
        format!("{}/bulk/files", app.config.fhir_base_url()),
        (app.config.bulk.expiry_hours as i64).saturating_mul(3_600_000),
    );
    // Requests wait for the registry to be restored from the log, so a job from before a
    // restart is never answered 404 and never started twice.
    let (restored_tx, restored) = tokio::sync::watch::channel(false);
    if tokio::runtime::Handle::try_current().is_ok() {
        let restoring = worker.clone();
        tokio::spawn(async move {
            match restoring.restore().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "resumed unfinished export jobs"),
                Err(e) => tracing::error!(error = %e, "restoring export jobs failed"),
            }
            let _ = restored_tx.send(true);
            restoring.expire_forever().await;
        });
    } else {
        tracing::warn!("no async runtime: export jobs are not restored");
        let _ = restored_tx.send(true);
    }
    let bulk = Arc::new(Bulk {
        app,
        worker,
        restored,
    });
    let with_bulk = {
        let bulk = bulk.clone();
        warp::any().map(move || bulk.clone())
    };
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();

    let kickoff = warp::method()
        .and(warp::path::full())
        .and_then(|method: Method, path: warp::path::FullPath| async move {
            if method != Method::GET && method != Method::POST {
                return Err(warp::reject::not_found());
            }
            match kickoff_level(path.as_str()) {
                Some(level) => Ok((method, level)),
                None => Err(warp::reject::not_found()),
            }
        })
        .untuple_one()
        .and(query)
        .and(warp::header::headers_cloned())
        .and(access_context())
        .and(with_bulk.clone())
        .and(warp::body::stream())
        .then(
            |method: Method,
             level: ExportLevel,
             query: String,
             headers: HeaderMap,
             ctx: Result<AccessContext, Denied>,
             bulk: Arc<Bulk>,
             body| async move {
                let body = match crate::fhir::read_body(body, MAX_KICKOFF_BODY, &headers).await {
                    Ok(b) => b,
                    Err(e) => return error_response(e),
                };
                bulk.kickoff(method, level, &query, &headers, ctx, &body)
                    .await
            },
        );

    let status = warp::path!("fhir" / "r4" / "bulk" / "status" / String)
        .and(warp::method())
        .and(access_context())
        .and(with_bulk.clone())
        .then(
            |job_id: String,
             method: Method,
             ctx: Result<AccessContext, Denied>,
             bulk: Arc<Bulk>| async move { bulk.status(&job_id, method, ctx).await },
        );

    let download = warp::path!("fhir" / "r4" / "bulk" / "files" / String / String)
        .and(warp::get())
        .and(warp::header::optional::<String>("range"))
        .and(access_context())
        .and(with_bulk)
        .then(
            |job_id: String,
             name: String,
             range: Option<String>,
             ctx: Result<AccessContext, Denied>,
             bulk: Arc<Bulk>| async move {
                bulk.download(&job_id, &name, range.as_deref(), ctx).await
            },
        );

    kickoff.or(status).unify().or(download).unify().boxed()
}

/// The media type of an export file, by its name.
fn media_type(name: &str) -> &'static str {
    if name.ends_with(".parquet") {
        parquet::PARQUET_MEDIA_TYPE
    } else {
        "application/fhir+ndjson"
    }
}

/// The export level of a kick-off path, at `/fhir/r4` or at the root.
fn kickoff_level(path: &str) -> Option<ExportLevel> {
    let path = path.replace("%24", "$");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.as_slice() {
        ["fhir", "r4", rest @ ..] => rest,
        rest => rest,
    };
    match rest {
        ["$export"] => Some(ExportLevel::System),
        ["Patient", "$export"] => Some(ExportLevel::Patient),
        ["Group", id, "$export"] if sphere_domain::resource::is_valid_id(id) => {
            Some(ExportLevel::Group {
                id: (*id).to_owned(),
            })
        }
        _ => None,
    }
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAnswer {
    /// Not a single byte range this server serves (several ranges, another unit): the whole
    /// file, as RFC 9110 allows.
    Whole,
    Part(std::ops::Range<u64>),
    Unsatisfiable,
}

/// Reads `bytes=first-last`, `bytes=first-` and `bytes=-suffix`.
fn byte_range(header: &str, size: u64) -> RangeAnswer {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Whole;
    };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Whole;
    };
    let number = |s: &str| s.trim().parse::<u64>().ok();
    let range = match (first.trim().is_empty(), number(first), number(last)) {
        (true, _, Some(suffix)) if suffix > 0 => size.saturating_sub(suffix)..size,
        (false, Some(first), None) if last.trim().is_empty() => first..size,
        (false, Some(first), Some(last)) if last >= first => first..(last + 1).min(size),
        _ => return RangeAnswer::Whole,
    };
    if range.start >= size || range.is_empty() {
        RangeAnswer::Unsatisfiable
    } else {
        RangeAnswer::Part(range)
    }
}

struct Bulk {
    app: Arc<App>,
    worker: ExportWorker,
    restored: tokio::sync::watch::Receiver<bool>,
}

impl Bulk {
    /// Waits (bounded) until the job registry holds every job in the log.
    async fn ready(&self) -> Result<(), warp::reply::Response> {
        let mut restored = self.restored.clone();
        let waited = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            restored.wait_for(|done| *done),
        )
        .await
        .map(|r| r.is_ok());
        match waited {
            Ok(true) => Ok(()),
            _ => Err(error_response(FhirError::Unavailable(
                "export jobs are still being restored; retry later".into(),
            ))),
        }
    }

    async fn kickoff(
        &self,
        method: Method,
        level: ExportLevel,
        query: &str,
        headers: &HeaderMap,
        ctx: Result<AccessContext, Denied>,
        body: &[u8],
    ) -> warp::reply::Response {
        crate::audit::note(|n| {
            n.interaction("bulk-export");
            n.operation = Some("$export".into());
            n.query = (!query.is_empty()).then(|| query.to_owned());
        });
        let ctx = match authenticated(ctx) {
            Ok(ctx) => ctx,
            Err(denied) => return denied_response(&denied),
        };
        if let Err(response) = self.ready().await {
            return response;
        }
        if let Err(e) = kickoff::check_headers(headers) {
            return error_response(FhirError::BadRequest(e.0));
        }
        let params = match kickoff::raw_parameters(&method, query, body)
            .and_then(|pairs| kickoff::parse(&level, &pairs))
        {
            Ok(p) => p,
            Err(e) => return error_response(FhirError::BadRequest(e.0)),
        };
        // Authorization: the caller must be allowed to read each type it asks for; asked for
        // nothing in particular, it gets the types it may read. `SearchType` is the check:
        // an export is a search of each type (SMART `system/Type.rs`).
        // Per-resource decisions (granular `?category=` scopes, the patient compartment) are
        // made by the worker with the scopes recorded in the job (`access`).
        let allowed = |t: &str| ctx.check(Interaction::SearchType, Some(t), None);
        let mut types = params.types.clone();
        for t in &types {
            if let Err(denied) = allowed(t) {
                return denied_response(&denied);
            }
        }
        if types.is_empty() && !ctx.is_operator() {
            types = sphere_domain::fhir::capability::capability()
                .supported_types
                .iter()
                .filter(|t| allowed(t).is_ok())
                .cloned()
                .collect();
            if types.is_empty() {
                return denied_response(&Denied::Forbidden(
                    "no resource type may be exported with these scopes".into(),
                ));
            }
        }
        if let ExportLevel::Group { .. } = level {
            if let Err(denied) = ctx.check(Interaction::Read, Some("Group"), None) {
                return denied_response(&denied);
            }
        }
        let mut patients = params.patients.clone();
        if let Some(patient) = &ctx.patient {
            // A patient-scoped client exports its own patient and nothing else.
            if patients.iter().any(|p| p != patient) || level == ExportLevel::System {
                return denied_response(&Denied::Forbidden(
                    "a patient-scoped token exports its own patient only".into(),
                ));
            }
            patients = vec![patient.clone()];
        }
        let client_id = client_of(&ctx);
        let limit = self.app.config.bulk.max_jobs_per_client;
        if self.worker.jobs.running_for(&client_id) >= limit {
            // Retry-After: a job usually ends within half a minute.
            return error_response(FhirError::Denied(Denied::RateLimited(30)));
        }
        let log = self.app.log.as_ref();
        let head = match log.head().await {
            Ok(h) => h,
            Err(e) => return log_failure(e),
        };
        if let (ExportLevel::Group { id }, Some(end)) = (&level, head) {
            match export::group_members(log, id, end.0, &self.app.config.fhir_base_url()).await {
                Ok(Some(_)) => {}
                Ok(None) => return error_response(FhirError::NotFound("no such Group".into())),
                Err(_) => {
                    return error_response(FhirError::Internal("reading the Group failed".into()))
                }
            }
        }
        let transaction_ms = match head {
            Some(p) => match commit_ms_at(log, p.0).await {
                Ok(ms) => ms,
                Err(e) => return log_failure(e),
            },
            None => now_ms(),
        };
        let since_position = match params.since_ms {
            None => None,
            Some(since) => match self.worker.jobs.position_for_transaction_time(since) {
                Some(position) => position,
                None => match first_after(log, since, head.map(|p| p.0)).await {
                    Ok(p) => p,
                    Err(e) => return log_failure(e),
                },
            },
        };
        let job_id = uuid::Uuid::new_v4().simple().to_string();
        let base = self.app.config.base_url();
        let requested = ExportRequested {
            job_id: job_id.clone(),
            request: format!(
                "{base}{}{}{}",
                kickoff_path(&level),
                if query.is_empty() { "" } else { "?" },
                query
            ),
            level,
            patients,
            types,
            elements: params.elements,
            type_filters: params.type_filters,
            organize_by_patient: params.organize_by_patient,
            output_format: params.output_format,
            access: (!ctx.is_operator()).then(|| job::ExportAccess {
                scopes: ctx.scopes.clone(),
                patient: ctx.patient.clone(),
            }),
            since_ms: params.since_ms,
            since_position,
            until_ms: params.until_ms,
            position: head.map(|p| p.0),
            transaction_ms,
            client_id,
            requested_ms: now_ms(),
        };
        if let Err(e) = self.worker.submit(requested).await {
            return log_failure(e);
        }
        let mut response = warp::reply::with_status(
            warp::reply::json(&crate::fhir::outcome::outcome(
                "information",
                "informational",
                "export accepted; poll the Content-Location URL",
                None,
            )),
            StatusCode::ACCEPTED,
        )
        .into_response();
        let location = format!("{}/bulk/status/{job_id}", self.app.config.fhir_base_url());
        if let Ok(v) = HeaderValue::from_str(&location) {
            response.headers_mut().insert("content-location", v);
        }
        set_fhir_json(&mut response);
        response
    }

    async fn status(
        &self,
        job_id: &str,
        method: Method,
        ctx: Result<AccessContext, Denied>,
    ) -> warp::reply::Response {
        let ctx = match authenticated(ctx) {
            Ok(ctx) => ctx,
            Err(denied) => return denied_response(&denied),
        };
        if let Err(response) = self.ready().await {
            return response;
        }
        let Some(job) = self.worker.jobs.get(job_id) else {
            return error_response(FhirError::NotFound("no such export job".into()));
        };
        // Another client's job is answered as if it did not exist.
        if !ctx.is_operator() && job.requested.client_id != client_of(&ctx) {
            return error_response(FhirError::NotFound("no such export job".into()));
        }
        if method == Method::DELETE {
            return match self.worker.cancel(job_id).await {
                Ok(true) => {
                    let mut r = warp::reply::with_status(
                        warp::reply::json(&crate::fhir::outcome::outcome(
                            "information",
                            "informational",
                            "export cancelled",
                            None,
                        )),
                        StatusCode::ACCEPTED,
                    )
                    .into_response();
                    set_fhir_json(&mut r);
                    r
                }
                Ok(false) => error_response(FhirError::NotFound("no such export job".into())),
                Err(e) => log_failure(e),
            };
        }
        if method != Method::GET {
            return error_response(FhirError::MethodNotAllowed(
                "status supports GET and DELETE".into(),
            ));
        }
        match &job.status {
            JobStatus::Running => {
                let mut r = StatusCode::ACCEPTED.into_response();
                let progress = format!("read {} events", job.progress());
                if let Ok(v) = HeaderValue::from_str(&progress) {
                    r.headers_mut().insert("x-progress", v);
                }
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from_static(RETRY_AFTER_SECONDS));
                r
            }
            JobStatus::Completed(done) if self.worker.is_expired(done) => {
                error_response(FhirError::NotFound("the export has expired".into()))
            }
            JobStatus::Completed(done) => {
                let mut r = warp::reply::json(&done.manifest).into_response();
                let expires =
                    crate::fhir::store::http_date(done.completed_ms + self.worker.expiry_ms);
                if let Ok(v) = HeaderValue::from_str(&expires) {
                    r.headers_mut().insert("expires", v);
                }
                r
            }
            JobStatus::Failed(reason) => {
                error_response(FhirError::Internal(format!("the export failed: {reason}")))
            }
            JobStatus::Cancelled => {
                error_response(FhirError::NotFound("no such export job".into()))
            }
        }
    }

    /// A file of a completed export, streamed (a `Range` of it: 206), to the client that
    /// asked for the export.
    async fn download(
        &self,
        job_id: &str,
        name: &str,
        range: Option<&str>,
        ctx: Result<AccessContext, Denied>,
    ) -> warp::reply::Response {
        if let Err(refused) = self.authorize_download(job_id, name, ctx) {
            return error_response(refused);
        }
        let storage = &self.worker.storage;
        let size = match storage.size(job_id, name).await {
            Ok(Some(size)) => size,
            Ok(None) => return error_response(FhirError::NotFound("no such export file".into())),
            Err(e) => {
                tracing::error!(job = %job_id, error = %e, "export storage unavailable");
                return error_response(FhirError::Unavailable(
                    "the export storage is unavailable; retry later".into(),
                ));
            }
        };
        let (status, bytes) = match range.map(|r| byte_range(r, size)) {
            None | Some(RangeAnswer::Whole) => (StatusCode::OK, 0..size),
            Some(RangeAnswer::Part(part)) => (StatusCode::PARTIAL_CONTENT, part),
            Some(RangeAnswer::Unsatisfiable) => {
                let mut r = error_response(FhirError::BadRequest(
                    "the range is outside the file".into(),
                ));
                *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    r.headers_mut().insert(warp::http::header::CONTENT_RANGE, v);
                }
                return r;
            }
        };
        let length = bytes.end - bytes.start;
        let mut response =
            warp::reply::stream(storage.read(job_id, name, bytes.clone())).into_response();
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            warp::http::header::CONTENT_TYPE,
            HeaderValue::from_static(media_type(name)),
        );
        headers.insert(
            warp::http::header::CONTENT_LENGTH,
            HeaderValue::from(length),
        );
        headers.insert(
            warp::http::header::ACCEPT_RANGES,
            HeaderValue::from_static("bytes"),
        );
        if status == StatusCode::PARTIAL_CONTENT {
            let content_range = format!("bytes {}-{}/{size}", bytes.start, bytes.end - 1);
            if let Ok(v) = HeaderValue::from_str(&content_range) {
                headers.insert(warp::http::header::CONTENT_RANGE, v);
            }
        }
        response
    }

    /// A file may be downloaded by the client that asked for the export, once it is listed
    /// in the job's manifest (so never a file still being written).
    fn authorize_download(
        &self,
        job_id: &str,
        name: &str,
        ctx: Result<AccessContext, Denied>,
    ) -> Result<(), FhirError> {
        crate::audit::note(|n| {
            n.interaction("bulk-download");
            n.ids
                .push(format!("{job_id}/{name}").chars().take(200).collect());
        });
        let ctx = authenticated(ctx).map_err(|_| {
            FhirError::Denied(Denied::Unauthenticated(
                "a bearer token is required to download export files".into(),
            ))
        })?;
        let not_found = || FhirError::NotFound("no such export file".into());
        let job = self.worker.jobs.get(job_id).ok_or_else(not_found)?;
        if !ctx.is_operator() && job.requested.client_id != client_of(&ctx) {
            return Err(FhirError::Denied(Denied::Forbidden(
                "export files belong to the client that requested the export".into(),
            )));
        }
        let JobStatus::Completed(done) = &job.status else {
            return Err(not_found());
        };
        if self.worker.is_expired(done) {
            return Err(not_found());
        }
        let listed = ["output", "deleted", "error"].iter().any(|key| {
            done.manifest[key].as_array().is_some_and(|entries| {
                entries.iter().any(|e| {
                    e["url"]
                        .as_str()
                        .is_some_and(|u| u.ends_with(&format!("/{job_id}/{name}")))
                })
            })
        });
        if listed {
            Ok(())
        } else {
            Err(not_found())
        }
    }
}

fn kickoff_path(level: &ExportLevel) -> String {
    match level {
        ExportLevel::System => "/fhir/r4/$export".into(),
        ExportLevel::Patient => "/fhir/r4/Patient/$export".into(),
        ExportLevel::Group { id } => format!("/fhir/r4/Group/{id}/$export"),
    }
}

/// The context of an authenticated caller; an anonymous one (no bearer token) is a 401.
fn authenticated(ctx: Result<AccessContext, Denied>) -> Result<AccessContext, Denied> {
    let ctx = ctx?;
    if ctx.is_operator() || ctx.actor.client_id.is_some() {
        Ok(ctx)
    } else {
        Err(Denied::Unauthenticated(
            "a bearer token is required for Bulk Data".into(),
        ))
    }
}

fn client_of(ctx: &AccessContext) -> String {
    ctx.actor
        .client_id
        .clone()
        .unwrap_or_else(|| "anonymous".into())
}

/// The commit time of the event at `position` (the head).
async fn commit_ms_at(
    log: &dyn crate::eventlog::EventLog,
    position: u64,
) -> Result<i64, crate::eventlog::EventLogError> {
    let before = position.checked_sub(1).map(crate::eventlog::Position);
    let events = log
        .read_all(before, &crate::eventlog::EventFilter::all(), 1)
        .await?;
    Ok(events.first().map(|e| e.commit_ms()).unwrap_or_else(now_ms))
}

/// The exclusive start position for `_since`: the smallest `m` such that every event after
/// `m` committed after `since_ms`. A binary search over positions with one-event reads, so
/// `_since` never scans the log (positions grow with commit time).
async fn first_after(
    log: &dyn crate::eventlog::EventLog,
    since_ms: i64,
    head: Option<u64>,
) -> Result<Option<u64>, crate::eventlog::EventLogError> {
    use crate::eventlog::{EventFilter, Position};
    let Some(head) = head else {
        return Ok(None);
    };
    let all = EventFilter::all();
    let first = log.read_all(None, &all, 1).await?;
    let Some(first) = first.first() else {
        return Ok(None);
    };
    if first.commit_ms() > since_ms {
        return Ok(None);
    }
    // Invariant: the first event after `lo` committed at or before `since_ms`; after `hi`,
    // every event committed after it (or there is none).
    let (mut lo, mut hi) = (first.position.0, head);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let next = log.read_all(Some(Position(mid)), &all, 1).await?;
        let after_since = next.first().is_none_or(|e| e.commit_ms() > since_ms);
        if after_since {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(Some(hi))
}

fn set_fhir_json(response: &mut warp::reply::Response) {
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json"),
    );
}

/// An error answered as the FHIR API answers its own (`FhirError`: status, OperationOutcome),
/// with `WWW-Authenticate` on a 401 and `Retry-After` on a 429.
fn error_response(error: FhirError) -> warp::reply::Response {
    let mut response = warp::reply::with_status(
        warp::reply::json(&error.operation_outcome()),
        error.status(),
    )
    .into_response();
    set_fhir_json(&mut response);
    match error {
        FhirError::Denied(Denied::RateLimited(seconds)) => {
            response
                .headers_mut()
                .insert(warp::http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        FhirError::Denied(Denied::Unauthenticated(_)) => {
            response.headers_mut().insert(
                warp::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sphere\""),
            );
        }
        _ => {}
    }
    response
}

fn denied_response(denied: &Denied) -> warp::reply::Response {
    error_response(FhirError::Denied(denied.clone()))
}

fn log_failure(e: crate::eventlog::EventLogError) -> warp::reply::Response {
    // Event log errors name streams and positions, never resource content.
    tracing::error!(error = %e, "export: event log error");
    error_response(FhirError::Unavailable(
        "the event log is unavailable; retry later".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_are_read_as_rfc_9110_has_them() {
        assert_eq!(byte_range("bytes=0-9", 100), RangeAnswer::Part(0..10));
        assert_eq!(byte_range("bytes=90-", 100), RangeAnswer::Part(90..100));
        assert_eq!(byte_range("bytes=-5", 100), RangeAnswer::Part(95..100));
        assert_eq!(byte_range("bytes=95-200", 100), RangeAnswer::Part(95..100));
        assert_eq!(byte_range("bytes=100-", 100), RangeAnswer::Unsatisfiable);
        assert_eq!(byte_range("bytes=0-1,5-6", 100), RangeAnswer::Whole);
        assert_eq!(byte_range("items=0-1", 100), RangeAnswer::Whole);
    }

    #[test]
    fn kickoff_paths_are_recognized_at_the_fhir_base_and_the_root() {
        assert_eq!(kickoff_level("/fhir/r4/$export"), Some(ExportLevel::System));
        assert_eq!(
            kickoff_level("/Patient/$export"),
            Some(ExportLevel::Patient)
        );
        assert_eq!(
            kickoff_level("/fhir/r4/Group/g1/%24export"),
            Some(ExportLevel::Group { id: "g1".into() })
        );
        assert_eq!(kickoff_level("/fhir/r4/Patient/1"), None);
    }
}
