//! The audit view: the access history (`AccessRecorded` events of the `audit-{day}` streams)
//! indexed by patient and by agent (client id or user), for the FHIR `AuditEvent` search and
//! the patient's access-history page.
//!
//! It lives in memory and is rebuilt from the log at start, like the token-status view: the
//! records are small (ids, not resources). The auditors' bulk tool (`sphere audit`) does not
//! use it: it replays the log directly.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sphere_domain::audit::{type_and_subtype, AccessRecord, ACCESS_RECORDED, AUDIT_CATEGORY};
use sphere_domain::envelope::{Position, RecordedEvent};

use crate::{Projection, ProjectionError};

/// One recorded access and its event id (the `AuditEvent.id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: String,
    pub record: AccessRecord,
}

/// What to look for. Every given criterion must hold; lists are "any of".
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub id: Option<String>,
    /// A patient id (`123`).
    pub patient: Option<String>,
    /// A client id or a username.
    pub agent: Option<String>,
    /// Inclusive bounds on `recorded`, Unix ms.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// `code` or `system|code` of the type.
    pub types: Vec<String>,
    /// `code` or `system|code` of the subtype.
    pub subtypes: Vec<String>,
}

impl AuditQuery {
    fn matches(&self, e: &AuditEntry) -> bool {
        let r = &e.record;
        let coded = |wanted: &[String], (system, code): (&str, &str)| {
            wanted.is_empty()
                || wanted.iter().any(|w| match w.split_once('|') {
                    Some((s, c)) => (s.is_empty() || s == system) && c == code,
                    None => w == code,
                })
        };
        let ((ts, tc), (ss, sc)) = type_and_subtype(r);
        self.id.as_ref().is_none_or(|id| *id == e.id)
            && self
                .patient
                .as_ref()
                .is_none_or(|p| r.patients.iter().any(|x| x == p))
            && self.agent.as_ref().is_none_or(|a| {
                r.client_id.as_deref() == Some(a.as_str()) || r.user.as_deref() == Some(a.as_str())
            })
            && self.from_ms.is_none_or(|t| r.recorded_ms >= t)
            && self.to_ms.is_none_or(|t| r.recorded_ms <= t)
            && coded(&self.types, (ts, tc))
            && coded(&self.subtypes, (ss, &sc))
    }
}

#[derive(Debug, Default)]
pub struct AuditView {
    entries: Vec<AuditEntry>,
    by_patient: HashMap<String, Vec<usize>>,
    by_agent: HashMap<String, Vec<usize>>,
    by_id: HashMap<String, usize>,
    checkpoint: Option<Position>,
}

impl AuditView {
    fn push(&mut self, entry: AuditEntry) {
        let at = self.entries.len();
        for p in &entry.record.patients {
            self.by_patient.entry(p.clone()).or_default().push(at);
        }
        for a in [&entry.record.client_id, &entry.record.user]
            .into_iter()
            .flatten()
        {
            let list = self.by_agent.entry(a.clone()).or_default();
            if list.last() != Some(&at) {
                list.push(at);
            }
        }
        self.by_id.insert(entry.id.clone(), at);
        self.entries.push(entry);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&AuditEntry> {
        self.by_id.get(id).map(|&i| &self.entries[i])
    }

    /// Matching entries, newest first: `(total, up to limit of them)`.
    pub fn search(&self, q: &AuditQuery, limit: usize) -> (usize, Vec<AuditEntry>) {
        let candidates: Box<dyn DoubleEndedIterator<Item = &AuditEntry>> = if let Some(id) = &q.id {
            Box::new(self.get(id).into_iter())
        } else if let Some(p) = &q.patient {
            Box::new(
                self.by_patient
                    .get(p)
                    .into_iter()
                    .flatten()
                    .map(|&i| &self.entries[i]),
            )
        } else if let Some(a) = &q.agent {
            Box::new(
                self.by_agent
                    .get(a)
                    .into_iter()
                    .flatten()
                    .map(|&i| &self.entries[i]),
            )
        } else {
            Box::new(self.entries.iter())
        };
        let mut total = 0;
        let mut page = Vec::new();
        for e in candidates.rev().filter(|e| q.matches(e)) {
            total += 1;
            if page.len() < limit {
                page.push(e.clone());
            }
        }
        (total, page)
    }
}

/// Feeds the [`AuditView`].
pub struct AuditViewProjection {
    view: Arc<RwLock<AuditView>>,
}

impl AuditViewProjection {
    pub const NAME: &'static str = "audit";

    pub fn new() -> Self {
        Self {
            view: Arc::new(RwLock::new(AuditView::default())),
        }
    }

    pub fn view(&self) -> Arc<RwLock<AuditView>> {
        self.view.clone()
    }
}

impl Default for AuditViewProjection {
    fn default() -> Self {
        Self::new()
    }
}

fn poisoned() -> ProjectionError {
    ProjectionError::Storage("the audit view lock is poisoned".into())
}

impl Projection for AuditViewProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    /// Always from the start: the view lives in memory only.
    fn checkpoint(&self) -> Option<Position> {
        None
    }

    fn wants(&self, event: &RecordedEvent) -> bool {
        event.category() == AUDIT_CATEGORY && event.event_type == ACCESS_RECORDED
    }

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        let record: AccessRecord = event.json().map_err(|e| ProjectionError::BadEvent {
            position: event.position,
            message: e.to_string(),
        })?;
        self.view.write().map_err(|_| poisoned())?.push(AuditEntry {
            id: event.event_id.simple().to_string(),
            record,
        });
        Ok(())
    }

    fn commit(&mut self, position: Position) -> Result<(), ProjectionError> {
        self.view.write().map_err(|_| poisoned())?.checkpoint = Some(position);
        Ok(())
    }

    fn reset(&mut self) -> Result<(), ProjectionError> {
        *self.view.write().map_err(|_| poisoned())? = AuditView::default();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sphere_domain::envelope::EventMetadata;

    fn event(position: u64, record: &AccessRecord) -> RecordedEvent {
        RecordedEvent {
            position: Position(position),
            stream: sphere_domain::audit::stream_for(record.recorded_ms),
            revision: position - 1,
            event_id: uuid::Uuid::from_u128(u128::from(position)),
            event_type: ACCESS_RECORDED.into(),
            data: serde_json::to_vec(record).unwrap().into(),
            metadata: EventMetadata::default(),
        }
    }

    fn access(ms: i64, interaction: &str, client: &str, patient: Option<&str>) -> AccessRecord {
        AccessRecord {
            recorded_ms: ms,
            interaction: interaction.into(),
            client_id: Some(client.into()),
            patients: patient.map(|p| vec![p.to_owned()]).unwrap_or_default(),
            method: "GET".into(),
            path: "/fhir/r4/x".into(),
            status: 200,
            ..Default::default()
        }
    }

    #[test]
    fn finds_accesses_by_patient_agent_date_and_subtype_newest_first() {
        let mut p = AuditViewProjection::new();
        let records = [
            access(1000, "read", "app-a", Some("p1")),
            access(2000, "search-type", "app-b", Some("p1")),
            access(3000, "read", "app-b", Some("p2")),
            access(4000, "login", "app-a", None),
        ];
        for (i, r) in records.iter().enumerate() {
            let e = event(i as u64 + 1, r);
            assert!(p.wants(&e));
            p.apply(&e).unwrap();
        }
        p.commit(Position(4)).unwrap();
        let view = p.view();
        let view = view.read().unwrap();
        let ms = |q: &AuditQuery| -> Vec<i64> {
            view.search(q, 10)
                .1
                .iter()
                .map(|e| e.record.recorded_ms)
                .collect()
        };
        let by_patient = AuditQuery {
            patient: Some("p1".into()),
            ..Default::default()
        };
        assert_eq!(ms(&by_patient), vec![2000, 1000]);
        let by_agent = AuditQuery {
            agent: Some("app-b".into()),
            subtypes: vec!["read".into()],
            ..Default::default()
        };
        assert_eq!(ms(&by_agent), vec![3000]);
        let by_date = AuditQuery {
            from_ms: Some(2000),
            to_ms: Some(3000),
            ..Default::default()
        };
        assert_eq!(ms(&by_date), vec![3000, 2000]);
        let by_type = AuditQuery {
            types: vec!["http://dicom.nema.org/resources/ontology/DCM|110114".into()],
            ..Default::default()
        };
        assert_eq!(ms(&by_type), vec![4000]);
        let (total, page) = view.search(&AuditQuery::default(), 1);
        assert_eq!((total, page.len()), (4, 1));
        assert!(view.get(&page[0].id).is_some());
    }
}
