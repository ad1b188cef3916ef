//! Replaying the access history for auditors (`sphere audit`): read the `audit-{day}` streams
//! straight from the log (the embedded SQLite file opened read-only, so it works while the
//! server runs), keep the accesses that match a [`Filter`], and write them as a table, NDJSON
//! or Parquet.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray, UInt16Array};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use sphere_domain::audit::{day_of, instant, AccessRecord, ACCESS_RECORDED, AUDIT_CATEGORY};

use crate::eventlog::{Direction, EventLog, StreamStart};

/// Which accesses to keep. Every given criterion must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// A patient id: "who saw patient X".
    pub patient: Option<String>,
    /// A client id: "what did app Y touch".
    pub client: Option<String>,
    pub user: Option<String>,
    /// Inclusive bounds, Unix ms.
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Interactions (`read`, `search-type`, `token`...) or operations (`$everything`).
    pub interactions: Vec<String>,
}

impl Filter {
    pub fn matches(&self, r: &AccessRecord) -> bool {
        self.patient
            .as_ref()
            .is_none_or(|p| r.patients.iter().any(|x| x == p))
            && self
                .client
                .as_ref()
                .is_none_or(|c| r.client_id.as_deref() == Some(c.as_str()))
            && self
                .user
                .as_ref()
                .is_none_or(|u| r.user.as_deref() == Some(u.as_str()))
            && self.since_ms.is_none_or(|t| r.recorded_ms >= t)
            && self.until_ms.is_none_or(|t| r.recorded_ms <= t)
            && (self.interactions.is_empty()
                || self
                    .interactions
                    .iter()
                    .any(|i| *i == r.interaction || r.operation.as_deref() == Some(i.as_str())))
    }

    /// The first and last day streams that can hold a match.
    fn streams(&self) -> (String, String) {
        (
            self.since_ms.map_or_else(
                || format!("{AUDIT_CATEGORY}-"),
                |ms| format!("{AUDIT_CATEGORY}-{}", day_of(ms)),
            ),
            self.until_ms.map_or_else(
                || format!("{AUDIT_CATEGORY}-~"),
                |ms| format!("{AUDIT_CATEGORY}-{}", day_of(ms)),
            ),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no event log at {0} (is --data-dir right?)")]
    NoLog(String),
    #[error("cannot read the event log: {0}")]
    Read(String),
    #[error("an audit event at position {position} is not readable: {message}")]
    BadEvent { position: i64, message: String },
    #[error("cannot write the output: {0}")]
    Write(String),
}

/// Replays the embedded log in `data_dir`, read-only, calling `sink` with each matching
/// access (event id, record) in log order. Returns how many matched.
pub fn replay_sqlite(
    data_dir: &Path,
    filter: &Filter,
    mut sink: impl FnMut(&str, AccessRecord, &[u8]) -> Result<(), ReplayError>,
) -> Result<u64, ReplayError> {
    let path = crate::eventlog::sqlite::schema::database_path(data_dir);
    if !path.is_file() {
        return Err(ReplayError::NoLog(path.display().to_string()));
    }
    let conn = crate::eventlog::sqlite::schema::connect(&path, true)
        .map_err(|e| ReplayError::Read(e.to_string()))?;
    let (first, last) = filter.streams();
    // The category index gives audit events in log order; the day bounds skip other days
    // without decoding them.
    let mut statement = conn
        .prepare(
            "SELECT global_position, event_id, data FROM events
             WHERE category = ?1 AND event_type = ?2 AND stream >= ?3 AND stream <= ?4
             ORDER BY global_position",
        )
        .map_err(|e| ReplayError::Read(e.to_string()))?;
    let mut rows = statement
        .query(rusqlite::params![
            AUDIT_CATEGORY,
            ACCESS_RECORDED,
            first,
            last
        ])
        .map_err(|e| ReplayError::Read(e.to_string()))?;
    let mut matched = 0u64;
    while let Some(row) = rows.next().map_err(|e| ReplayError::Read(e.to_string()))? {
        let position: i64 = row.get(0).map_err(|e| ReplayError::Read(e.to_string()))?;
        let data = row
            .get_ref(2)
            .map_err(|e| ReplayError::Read(e.to_string()))?
            .as_blob()
            .map_err(|e| ReplayError::Read(e.to_string()))?;
        let record: AccessRecord =
            serde_json::from_slice(data).map_err(|e| ReplayError::BadEvent {
                position,
                message: e.to_string(),
            })?;
        if !filter.matches(&record) {
            continue;
        }
        let id = row
            .get_ref(1)
            .map_err(|e| ReplayError::Read(e.to_string()))?
            .as_blob()
            .map_err(|e| ReplayError::Read(e.to_string()))?;
        let id = uuid::Uuid::from_slice(id)
            .map(|u| u.simple().to_string())
            .map_err(|e| ReplayError::BadEvent {
                position,
                message: e.to_string(),
            })?;
        matched += 1;
        sink(&id, record, data)?;
    }
    Ok(matched)
}

/// Replays through the [`EventLog`] trait (KurrentDB): the day streams from `since` to
/// `until` (or every audit stream, by category, when unbounded).
pub async fn replay_log(
    log: &dyn EventLog,
    filter: &Filter,
    mut sink: impl FnMut(&str, AccessRecord, &[u8]) -> Result<(), ReplayError>,
) -> Result<u64, ReplayError> {
    const PAGE: usize = 10_000;
    let read = |e: crate::eventlog::EventLogError| ReplayError::Read(e.to_string());
    let mut matched = 0u64;
    let mut take = |e: &crate::eventlog::RecordedEvent| -> Result<(), ReplayError> {
        if e.event_type != ACCESS_RECORDED {
            return Ok(());
        }
        let record: AccessRecord = e.json().map_err(|err| ReplayError::BadEvent {
            position: e.position.0 as i64,
            message: err.to_string(),
        })?;
        if filter.matches(&record) {
            matched += 1;
            sink(&e.event_id.simple().to_string(), record, &e.data)?;
        }
        Ok(())
    };
    match (filter.since_ms, filter.until_ms) {
        (Some(since), Some(until)) if until >= since => {
            let mut day = since.div_euclid(86_400_000);
            while day <= until.div_euclid(86_400_000) {
                let stream = format!("{AUDIT_CATEGORY}-{}", day_of(day * 86_400_000));
                let mut start = StreamStart::Origin;
                loop {
                    let page = log
                        .read_stream(&stream, Direction::Forwards, start, PAGE)
                        .await
                        .map_err(read)?;
                    for e in &page {
                        take(e)?;
                    }
                    match page.last() {
                        Some(last) if page.len() == PAGE => {
                            start = StreamStart::Revision(last.revision + 1)
                        }
                        _ => break,
                    }
                }
                day += 1;
            }
        }
        _ => {
            let mut after = None;
            loop {
                let page = log
                    .read_category(AUDIT_CATEGORY, after, PAGE)
                    .await
                    .map_err(read)?;
                for e in &page {
                    take(e)?;
                }
                match page.last() {
                    Some(last) if page.len() == PAGE => after = Some(last.position),
                    _ => break,
                }
            }
        }
    }
    Ok(matched)
}

/// Writes one access as a line of NDJSON: its id and a readable time, then the record's own
/// fields. `raw` is the record's JSON as stored (the serialization of `r`), spliced in rather
/// than serialized again: replay is dominated by JSON work.
pub fn write_ndjson(
    out: &mut impl Write,
    id: &str,
    r: &AccessRecord,
    raw: &[u8],
) -> Result<(), ReplayError> {
    let write = |e: std::io::Error| ReplayError::Write(e.to_string());
    let body = match raw.trim_ascii() {
        [b'{', rest @ .., b'}'] if !rest.trim_ascii().is_empty() => rest,
        _ => {
            return Err(ReplayError::Write(format!(
                "access {id} is not a JSON object"
            )))
        }
    };
    // The id is a hex uuid and the instant is digits and punctuation: nothing to escape.
    write!(
        out,
        "{{\"id\":\"{id}\",\"recorded\":\"{}\",",
        instant(r.recorded_ms)
    )
    .map_err(write)?;
    out.write_all(body).map_err(write)?;
    out.write_all(b"}\n").map_err(write)
}

/// A plain-text table for a terminal.
pub struct Table {
    rows: Vec<[String; 8]>,
}

const HEADINGS: [&str; 8] = [
    "recorded",
    "interaction",
    "status",
    "client",
    "user",
    "patients",
    "what",
    "source",
];

impl Table {
    pub fn new() -> Self {
        Self { rows: Vec::new() }
    }

    pub fn push(&mut self, r: &AccessRecord) {
        let what = match (&r.query, r.ids.len()) {
            (Some(q), n) => format!("{}?{q} -> {n} results", r.types.join(",")),
            (None, 0) => r.path.clone(),
            (None, 1) => r.ids[0].clone(),
            (None, n) => format!("{} and {} more", r.ids[0], n - 1),
        };
        let interaction = match &r.operation {
            Some(op) => format!("{} {op}", r.interaction),
            None => r.interaction.clone(),
        };
        self.rows.push([
            instant(r.recorded_ms),
            interaction,
            r.status.to_string(),
            r.client_id.clone().unwrap_or_else(|| "-".into()),
            r.user.clone().unwrap_or_else(|| "-".into()),
            if r.patients.is_empty() {
                "-".into()
            } else {
                r.patients.join(",")
            },
            what.chars().take(80).collect(),
            r.source_ip.clone().unwrap_or_else(|| "-".into()),
        ]);
    }

    pub fn write(&self, out: &mut impl Write) -> Result<(), ReplayError> {
        let mut widths = HEADINGS.map(str::len);
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut line = |cells: &[&str]| -> Result<(), ReplayError> {
            let text: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            writeln!(out, "{}", text.join("  ").trim_end())
                .map_err(|e| ReplayError::Write(e.to_string()))
        };
        line(&HEADINGS)?;
        for row in &self.rows {
            line(&row.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        Ok(())
    }
}

impl Default for Table {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes accesses to a Parquet file in row groups, one column per field (lists for types,
/// ids and patients), readable by DuckDB, pandas/pyarrow and Spark.
pub struct ParquetOut<W: Write + Send> {
    writer: parquet::arrow::ArrowWriter<W>,
    schema: Arc<Schema>,
    pending: Vec<(String, AccessRecord)>,
}

const ROW_GROUP: usize = 65_536;

impl<W: Write + Send> ParquetOut<W> {
    pub fn new(out: W) -> Result<Self, ReplayError> {
        let list = || DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new(
                "recorded",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("interaction", DataType::Utf8, false),
            Field::new("operation", DataType::Utf8, true),
            Field::new("types", list(), false),
            Field::new("ids", list(), false),
            Field::new("query", DataType::Utf8, true),
            Field::new("patients", list(), false),
            Field::new("client_id", DataType::Utf8, true),
            Field::new("user", DataType::Utf8, true),
            Field::new("token_id", DataType::Utf8, true),
            Field::new("source_ip", DataType::Utf8, true),
            Field::new("method", DataType::Utf8, false),
            Field::new("path", DataType::Utf8, false),
            Field::new("status", DataType::UInt16, false),
            Field::new("detail", DataType::Utf8, true),
        ]));
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let writer = parquet::arrow::ArrowWriter::try_new(out, schema.clone(), Some(props))
            .map_err(|e| ReplayError::Write(e.to_string()))?;
        Ok(Self {
            writer,
            schema,
            pending: Vec::with_capacity(ROW_GROUP),
        })
    }

    pub fn push(&mut self, id: &str, record: AccessRecord) -> Result<(), ReplayError> {
        self.pending.push((id.to_owned(), record));
        if self.pending.len() >= ROW_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ReplayError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        let text = |f: &dyn Fn(&AccessRecord) -> Option<&str>| -> ArrayRef {
            Arc::new(rows.iter().map(|(_, r)| f(r)).collect::<StringArray>())
        };
        let list = |f: &dyn Fn(&AccessRecord) -> &Vec<String>| -> ArrayRef {
            let mut b = ListBuilder::new(StringBuilder::new());
            for (_, r) in &rows {
                for v in f(r) {
                    b.values().append_value(v);
                }
                b.append(true);
            }
            Arc::new(b.finish())
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(
                rows.iter()
                    .map(|(id, _)| Some(id.as_str()))
                    .collect::<StringArray>(),
            ),
            Arc::new(
                TimestampMillisecondArray::from(
                    rows.iter().map(|(_, r)| r.recorded_ms).collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
            text(&|r| Some(r.interaction.as_str())),
            text(&|r| r.operation.as_deref()),
            list(&|r| &r.types),
            list(&|r| &r.ids),
            text(&|r| r.query.as_deref()),
            list(&|r| &r.patients),
            text(&|r| r.client_id.as_deref()),
            text(&|r| r.user.as_deref()),
            text(&|r| r.token_id.as_deref()),
            text(&|r| r.source_ip.as_deref()),
            text(&|r| Some(r.method.as_str())),
            text(&|r| Some(r.path.as_str())),
            Arc::new(UInt16Array::from(
                rows.iter().map(|(_, r)| r.status).collect::<Vec<_>>(),
            )),
            text(&|r| r.detail.as_deref()),
        ];
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| ReplayError::Write(e.to_string()))?;
        self.writer
            .write(&batch)
            .map_err(|e| ReplayError::Write(e.to_string()))
    }

    /// Writes what is pending and the footer.
    pub fn finish(mut self) -> Result<(), ReplayError> {
        self.flush()?;
        self.writer
            .close()
            .map(|_| ())
            .map_err(|e| ReplayError::Write(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(ms: i64, client: &str, patient: &str, interaction: &str) -> AccessRecord {
        AccessRecord {
            recorded_ms: ms,
            interaction: interaction.into(),
            client_id: Some(client.into()),
            patients: vec![patient.into()],
            ids: vec![format!("Patient/{patient}")],
            method: "GET".into(),
            path: format!("/fhir/r4/Patient/{patient}"),
            status: 200,
            ..Default::default()
        }
    }

    #[test]
    fn filters_answer_who_saw_a_patient_and_what_an_app_touched() {
        let a = access(1000, "app-a", "p1", "read");
        let by_patient = Filter {
            patient: Some("p1".into()),
            ..Default::default()
        };
        assert!(by_patient.matches(&a));
        let by_client = Filter {
            client: Some("app-b".into()),
            ..Default::default()
        };
        assert!(!by_client.matches(&a));
        let window = Filter {
            since_ms: Some(1001),
            ..Default::default()
        };
        assert!(!window.matches(&a));
        let kind = Filter {
            interactions: vec!["search-type".into(), "read".into()],
            ..Default::default()
        };
        assert!(kind.matches(&a));
        assert_eq!(
            Filter {
                since_ms: Some(0),
                until_ms: Some(86_400_000),
                ..Default::default()
            }
            .streams(),
            ("audit-1970-01-01".into(), "audit-1970-01-02".into())
        );
    }

    #[test]
    fn parquet_output_reads_back_with_the_parquet_reader() {
        let mut bytes = Vec::new();
        let mut out = ParquetOut::new(&mut bytes).unwrap();
        out.push("e1", access(1000, "app-a", "p1", "read")).unwrap();
        out.push("e2", access(2000, "app-b", "p2", "search-type"))
            .unwrap();
        out.finish().unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(bytes),
        )
        .unwrap()
        .build()
        .unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        let batch = &batches[0];
        assert_eq!(batch.num_rows(), 2);
        let clients = batch
            .column_by_name("client_id")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(clients.value(1), "app-b");
    }
}
