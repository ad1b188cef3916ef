//! Resource versions on the event log: reading the current or a given version of a resource,
//! and preparing the event that writes the next one.
//!
//! A resource is the stream `{Type}-{id}`; version n is the event at revision n-1, its body the
//! resource exactly as a read returns it (see `sphere_domain::resource`). Reads therefore never
//! re-serialize, and a write decides the version number before appending: the append's
//! expected revision is what makes two concurrent writers unable to both win.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{Map, Value};
use sphere_domain::fhir_rest;
use sphere_domain::resource::{self, RESOURCE_CREATED, RESOURCE_DELETED, RESOURCE_UPDATED};
use uuid::Uuid;

use super::access::AccessContext;
use super::outcome::FhirError;
use crate::eventlog::{
    Direction, EventLog, EventMetadata, ExpectedRevision, NewEvent, Position, RecordedEvent,
    StreamStart, StreamWrite,
};

/// Key in an event's metadata `extra` holding `meta.lastUpdated` as Unix milliseconds, so
/// `Last-Modified` and `_since` need not parse the body.
const LAST_UPDATED_MS: &str = "lastUpdatedMs";

/// One stored version of a resource (or its deletion).
#[derive(Debug, Clone)]
pub struct StoredVersion {
    pub resource_type: String,
    pub id: String,
    /// Stream revision; the FHIR version is revision + 1.
    pub revision: u64,
    pub deleted: bool,
    /// The resource JSON as stored (for a deletion, `{"resourceType","id"}`).
    pub body: Bytes,
    pub last_updated_ms: i64,
    pub position: Position,
}

impl StoredVersion {
    pub fn version(&self) -> u64 {
        resource::version_id(self.revision)
    }

    /// The version of a recorded resource event; None for events that are not resource events.
    pub fn from_event(event: RecordedEvent) -> Option<Self> {
        if !resource::is_resource_event(&event.event_type) {
            return None;
        }
        let (resource_type, id) = event.stream.split_once('-')?;
        let last_updated_ms = last_updated_ms(&event);
        Some(Self {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            revision: event.revision,
            deleted: event.event_type == RESOURCE_DELETED,
            last_updated_ms,
            position: event.position,
            body: event.data,
        })
    }

    /// `Type/id/_history/n`.
    pub fn versioned_reference(&self) -> String {
        format!(
            "{}/{}/_history/{}",
            self.resource_type,
            self.id,
            self.version()
        )
    }
}

/// `meta.lastUpdated` of a resource event in Unix milliseconds, from its metadata (the commit
/// time for events written before it was recorded there).
pub fn last_updated_ms(event: &RecordedEvent) -> i64 {
    event
        .metadata
        .extra
        .as_ref()
        .and_then(|e| e.get(LAST_UPDATED_MS))
        .and_then(Value::as_i64)
        .unwrap_or(event.metadata.commit_ms)
}

/// The newest version of `resource_type/id` (possibly a deletion); None if it never existed.
pub async fn current(
    log: &dyn EventLog,
    resource_type: &str,
    id: &str,
) -> Result<Option<StoredVersion>, FhirError> {
    let stream = resource::stream_name(resource_type, id);
    let events = log
        .read_stream(&stream, Direction::Backwards, StreamStart::Origin, 1)
        .await?;
    Ok(events
        .into_iter()
        .next()
        .and_then(StoredVersion::from_event))
}

/// Version `version` (1-based) of `resource_type/id`.
pub async fn version(
    log: &dyn EventLog,
    resource_type: &str,
    id: &str,
    version: u64,
) -> Result<Option<StoredVersion>, FhirError> {
    if version == 0 {
        return Ok(None);
    }
    let stream = resource::stream_name(resource_type, id);
    let events = log
        .read_stream(
            &stream,
            Direction::Forwards,
            StreamStart::Revision(version - 1),
            1,
        )
        .await?;
    Ok(events
        .into_iter()
        .next()
        .filter(|e| e.revision == version - 1)
        .and_then(StoredVersion::from_event))
}

/// The current version of `resource_type/id` if `incoming` would change nothing in it (see
/// [`fhir_rest::same_content`]); None if it is absent, deleted, or different.
pub async fn unchanged(
    log: &dyn EventLog,
    resource_type: &str,
    id: &str,
    incoming: &Map<String, Value>,
) -> Result<Option<StoredVersion>, FhirError> {
    let Some(current) = current(log, resource_type, id).await? else {
        return Ok(None);
    };
    if current.deleted {
        return Ok(None);
    }
    let stored: Map<String, Value> = serde_json::from_slice(&current.body)
        .map_err(|e| FhirError::Internal(format!("a stored resource is not JSON: {e}")))?;
    Ok(fhir_rest::same_content(&stored, incoming).then_some(current))
}

/// A write decided but not yet appended: the stream write plus what the response needs.
#[derive(Debug, Clone)]
pub struct PreparedWrite {
    pub write: StreamWrite,
    pub resource_type: String,
    pub id: String,
    pub version: u64,
    pub last_updated_ms: i64,
    /// The stored body (what a read will return).
    pub body: Bytes,
    pub created: bool,
    pub deleted: bool,
}

/// Metadata for the events of one request: who, and a correlation id shared by every event the
/// request writes (a transaction's events share it).
pub fn event_metadata(
    ctx: &AccessContext,
    correlation: Uuid,
    last_updated_ms: i64,
) -> EventMetadata {
    let mut extra = Map::new();
    extra.insert(LAST_UPDATED_MS.into(), Value::from(last_updated_ms));
    EventMetadata {
        correlation_id: Some(correlation),
        causation_id: None,
        actor: Some(ctx.actor.clone()),
        commit_ms: 0,
        extra: Some(extra),
    }
}

/// Prepares version `version` of `resource_type/id` from a validated resource object (read,
/// not consumed: the body is serialized from it, stamped, in one pass).
/// `expected` is the stream revision the append insists on (NoStream for version 1).
#[allow(clippy::too_many_arguments)]
pub fn prepare_put(
    resource: &Map<String, Value>,
    resource_type: &str,
    id: &str,
    version: u64,
    expected: ExpectedRevision,
    now_ms: i64,
    metadata: EventMetadata,
) -> Result<PreparedWrite, FhirError> {
    let body = Bytes::from(
        fhir_rest::stamped_json(resource, id, version, &instant(now_ms))
            .map_err(|e| FhirError::Internal(format!("serializing a resource failed: {e}")))?,
    );
    let created = version == 1;
    let event_type = if created {
        RESOURCE_CREATED
    } else {
        RESOURCE_UPDATED
    };
    Ok(PreparedWrite {
        write: StreamWrite {
            stream: resource::stream_name(resource_type, id),
            expected,
            events: vec![NewEvent::new(event_type, body.clone()).with_metadata(metadata)],
        },
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
        version,
        last_updated_ms: now_ms,
        body,
        created,
        deleted: false,
    })
}

/// Prepares the deletion of `current` (which must not itself be a deletion).
pub fn prepare_delete(
    current: &StoredVersion,
    now_ms: i64,
    metadata: EventMetadata,
) -> Result<PreparedWrite, FhirError> {
    let body = Bytes::from(
        serde_json::to_vec(&fhir_rest::deletion_body(
            &current.resource_type,
            &current.id,
        ))
        .map_err(|e| FhirError::Internal(format!("serializing a deletion failed: {e}")))?,
    );
    Ok(PreparedWrite {
        write: StreamWrite {
            stream: resource::stream_name(&current.resource_type, &current.id),
            expected: ExpectedRevision::Exact(current.revision),
            events: vec![NewEvent::new(RESOURCE_DELETED, body.clone()).with_metadata(metadata)],
        },
        resource_type: current.resource_type.clone(),
        id: current.id.clone(),
        version: current.version() + 1,
        last_updated_ms: now_ms,
        body,
        created: false,
        deleted: true,
    })
}

/// A new server-assigned logical id: a lowercase UUID v7 (time-ordered, so ids written together
/// sit together in indexes).
pub fn new_id() -> String {
    Uuid::now_v7().to_string()
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A FHIR `instant` with millisecond precision in UTC: `2026-11-29T21:04:29.123Z`.
pub fn instant(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// The HTTP date format (RFC 9110 IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
const HTTP_DATE: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// An HTTP date for `Last-Modified`.
pub fn http_date(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(HTTP_DATE).ok())
        .unwrap_or_else(|| "Thu, 01 Jan 1970 00:00:00 GMT".into())
}

/// Parses an HTTP date (`If-Modified-Since`) into Unix milliseconds.
pub fn parse_http_date(value: &str) -> Option<i64> {
    let t = time::PrimitiveDateTime::parse(value.trim(), HTTP_DATE).ok()?;
    Some(t.assume_utc().unix_timestamp() * 1000)
}

/// Parses a FHIR `instant`/`dateTime`/`date` (as `_since` and `_at` carry them) to the Unix
/// millisecond at which it starts. A date without a time zone is read as UTC.
pub fn parse_fhir_time(value: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let v = value.trim();
    if let Ok(t) = time::OffsetDateTime::parse(v, &Rfc3339) {
        return Some((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    // Partial precision: YYYY, YYYY-MM, YYYY-MM-DD.
    let mut parts = v.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next().map(str::parse).transpose().ok()?.unwrap_or(1);
    let day: u8 = parts.next().map(str::parse).transpose().ok()?.unwrap_or(1);
    if parts.next().is_some() || !(1000..=9999).contains(&year) {
        return None;
    }
    let month = time::Month::try_from(month).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    Some((date.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_have_millisecond_precision_in_utc() {
        assert_eq!(instant(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(instant(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            parse_fhir_time("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(parse_fhir_time("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_fhir_time("1970"), Some(0));
        assert_eq!(parse_fhir_time("notadate"), None);
    }

    #[test]
    fn http_dates_round_trip_to_the_second() {
        let d = http_date(1_700_000_000_999);
        assert_eq!(d, "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(parse_http_date(&d), Some(1_700_000_000_000));
    }
}
