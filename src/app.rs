//! The running application: configuration, the event log, and the projections fed from it.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use sphere_projections::audit_view::{AuditView, AuditViewProjection};
use sphere_projections::search_index::{SearchIndex, SearchIndexProjection};
use sphere_projections::stats::{LogStatistics, StatsProjection};
use sphere_projections::token_status::TokenStatusProjection;

use crate::config::Config;
use crate::eventlog::sqlite::SqliteLog;
use crate::eventlog::{EventLog, EventLogError, Position};
use crate::projection::{self, runner, ProjectionHandle, WaitError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Log(#[from] EventLogError),
    #[error(transparent)]
    Projection(#[from] sphere_projections::ProjectionError),
    #[error(transparent)]
    Smart(#[from] crate::smart::SetupError),
}

pub struct App {
    pub config: Config,
    pub log: Arc<dyn EventLog>,
    pub stats: Arc<RwLock<LogStatistics>>,
    /// The FHIR search index (read side); searches wait for it with `wait_for_projections`.
    pub search: SearchIndex,
    /// The SMART authorization server's keys and token-status view.
    pub smart: Arc<crate::smart::Smart>,
    /// Records each access durably before its response goes out.
    pub audit: Arc<crate::audit::Auditor>,
    /// The access history by patient and agent (FHIR `AuditEvent`, the access-history page).
    pub audit_view: Arc<AuditView>,
    audit_handle: ProjectionHandle,
    stats_handle: ProjectionHandle,
    /// The projections a request waits for after a write.
    projections: Vec<ProjectionHandle>,
}

/// Opens the event log the configuration names.
pub async fn open_log(config: &Config) -> Result<Arc<dyn EventLog>, EventLogError> {
    if config.embedded_log() {
        Ok(Arc::new(SqliteLog::open(&config.data_dir)?))
    } else {
        open_remote_log(&config.eventstore.url).await
    }
}

async fn open_remote_log(url: &str) -> Result<Arc<dyn EventLog>, EventLogError> {
    Ok(Arc::new(
        crate::eventlog::kurrentdb::KurrentDbLog::connect(url).await?,
    ))
}

impl App {
    /// Opens the log and starts every projection (each catches up from its checkpoint).
    pub async fn start(config: Config) -> Result<Arc<Self>, StartError> {
        let log = open_log(&config).await?;
        let stats = StatsProjection::open(&projection::projections_dir(&config.data_dir))?;
        let stats_view = stats.view();
        let search = SearchIndexProjection::open(
            &projection::search_dir(&config.data_dir),
            &config.fhir_base_url(),
        )?;
        let search_view = search.handle();
        let search_handle = runner::spawn(log.clone(), search);
        let token_status = TokenStatusProjection::new();
        let token_status_view = token_status.view();
        let token_status_handle = runner::spawn(log.clone(), token_status);
        let smart = Arc::new(crate::smart::Smart::new(
            &config,
            token_status_view,
            token_status_handle.clone(),
        )?);
        crate::smart::bearer::install(&smart);
        crate::smart::Smart::watch_keys(&smart);
        // What requests wait for after a write (read-your-writes). Not the statistics (only
        // operators read them, and every access record moves them) nor the audit view (FHIR
        // requests must not wait for the audit trail of others; AuditEvent searches wait for it).
        let projections = vec![token_status_handle, search_handle];
        let stats_handle = runner::spawn(log.clone(), stats);
        let audit_projection =
            AuditViewProjection::open(&projection::projections_dir(&config.data_dir))?;
        let audit_view = audit_projection.view();
        let audit_handle = runner::spawn(log.clone(), audit_projection);
        let audit = crate::audit::Auditor::start(
            log.clone(),
            Duration::from_millis(config.audit.group_commit_ms),
        );
        Ok(Arc::new(Self {
            config,
            log,
            stats: stats_view,
            search: search_view,
            smart,
            audit,
            audit_view,
            audit_handle,
            stats_handle,
            projections,
        }))
    }

    /// Every running projection, statistics and the audit view included (health and metrics
    /// list them).
    pub fn projections(&self) -> impl Iterator<Item = &ProjectionHandle> {
        std::iter::once(&self.stats_handle)
            .chain(&self.projections)
            .chain(std::iter::once(&self.audit_handle))
    }

    /// Waits until the audit view holds everything committed up to `position`.
    pub async fn wait_for_audit_view(&self, position: Position) -> Result<(), WaitError> {
        let bound = Duration::from_millis(self.config.http.consistency_wait_ms);
        self.audit_handle.wait_for(position, bound).await
    }

    /// Waits until the audit view holds every access recorded before this call.
    pub async fn audit_view_caught_up(&self) -> Result<(), String> {
        if let Some(head) = self.log.head().await.map_err(|e| e.to_string())? {
            self.wait_for_audit_view(head)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Waits until every projection has applied everything committed up to `position`.
    pub async fn wait_for_projections(&self, position: Position) -> Result<(), WaitError> {
        let bound = Duration::from_millis(self.config.http.consistency_wait_ms);
        for handle in &self.projections {
            handle.wait_for(position, bound).await?;
        }
        Ok(())
    }

    /// Finishes in-flight appends and closes the log.
    pub async fn shutdown(&self) {
        if let Err(e) = self.log.close().await {
            tracing::error!(error = %e, "closing the event log failed");
        }
    }
}
