//! `_outputFormat=application/vnd.apache.parquet`: the export as one Parquet file per type, for
//! analysts (DuckDB, pandas/pyarrow, Spark) who would otherwise flatten NDJSON themselves.
//!
//! Every file has the same columns, whatever the type: `id`, `lastUpdated` (UTC timestamp),
//! `versionId`, `patient` (the id of the patient whose compartment holds the resource, when
//! there is one), the flattened common elements of [`FLATTENED`] (null where the type has no
//! such element), and `resource`, the exported JSON exactly as the NDJSON line would be. One
//! schema for all types keeps the table of flattened elements the only thing to maintain, and
//! lets an analyst union files.
//!
//! Rows are buffered up to [`ROW_GROUP_ROWS`] rows (or [`ROW_GROUP_BYTES`] of JSON) and then
//! written as one row group, so memory per type is bounded whatever the export's size.

use std::io;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use serde_json::Value;

use super::storage::PartFile;

/// The media type of `_outputFormat` and of the downloads.
pub const PARQUET_MEDIA_TYPE: &str = "application/vnd.apache.parquet";

/// Rows per row group (at most).
pub const ROW_GROUP_ROWS: usize = 4096;
/// Resource JSON per row group (at most), for types with large resources.
const ROW_GROUP_BYTES: usize = 8 << 20;

/// How a flattened element is read.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// A primitive, as text (codes, dates, instants).
    Text,
    /// A CodeableConcept (or a list of them): `system|code` of its first coding.
    Code,
    /// A Reference: its `reference`.
    Reference,
}

/// A column of elements common to many types: the first path present in a resource wins.
/// Paths are element names from the root, `.` between levels; a list is read at its first item.
struct Flattened {
    column: &'static str,
    shape: Shape,
    paths: &'static [&'static str],
}

/// The flattened columns, in file order.
const FLATTENED: &[Flattened] = &[
    Flattened {
        column: "status",
        shape: Shape::Text,
        paths: &["status", "clinicalStatus"],
    },
    Flattened {
        column: "code",
        shape: Shape::Code,
        paths: &[
            "code",
            "vaccineCode",
            "medicationCodeableConcept",
            "type",
            "category",
        ],
    },
    Flattened {
        column: "subject",
        shape: Shape::Reference,
        paths: &["subject", "patient", "beneficiary"],
    },
    Flattened {
        column: "effective",
        shape: Shape::Text,
        paths: &[
            "effectiveDateTime",
            "effectiveInstant",
            "effectivePeriod.start",
            "occurrenceDateTime",
            "occurrencePeriod.start",
            "performedDateTime",
            "performedPeriod.start",
            "onsetDateTime",
            "authoredOn",
            "recordedDate",
            "period.start",
            "issued",
            "date",
            "recorded",
            "birthDate",
        ],
    },
];

fn schema(resource_type: &str) -> Arc<Schema> {
    let mut fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new(
            "lastUpdated",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("versionId", DataType::Utf8, false),
        Field::new("patient", DataType::Utf8, true),
    ];
    fields.extend(
        FLATTENED
            .iter()
            .map(|f| Field::new(f.column, DataType::Utf8, true)),
    );
    fields.push(Field::new("resource", DataType::Utf8, false));
    let metadata = [("fhir.resourceType".to_owned(), resource_type.to_owned())].into();
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// One exported resource, as a row.
#[derive(Debug)]
pub struct Row {
    pub id: String,
    pub last_updated_ms: i64,
    pub version_id: String,
    pub patient: Option<String>,
    flattened: Vec<Option<String>>,
    /// The exported JSON.
    pub resource: String,
}

impl Row {
    /// The row of `resource` (already subsetted by `_elements`), serialized as `json`.
    pub fn new(
        resource: &Value,
        json: String,
        last_updated_ms: i64,
        version_id: String,
        patient: Option<String>,
    ) -> Self {
        Self {
            id: resource["id"].as_str().unwrap_or_default().to_owned(),
            last_updated_ms,
            version_id,
            patient,
            flattened: FLATTENED.iter().map(|f| flatten(f, resource)).collect(),
            resource: json,
        }
    }
}

fn flatten(column: &Flattened, resource: &Value) -> Option<String> {
    column.paths.iter().find_map(|path| {
        let value = path
            .split('.')
            .try_fold(resource, |v, name| first(v.get(name)?))?;
        match column.shape {
            // A CodeableConcept where a code is expected (Condition.clinicalStatus): its code.
            Shape::Text => {
                text(value).or_else(|| first(value.get("coding")?)?.get("code").and_then(text))
            }
            Shape::Reference => value.get("reference").and_then(text),
            Shape::Code => match value {
                Value::String(s) => Some(s.clone()),
                concept => {
                    let coding = first(concept.get("coding")?)?;
                    let code = coding.get("code").and_then(Value::as_str)?;
                    Some(match coding.get("system").and_then(Value::as_str) {
                        Some(system) => format!("{system}|{code}"),
                        None => code.to_owned(),
                    })
                }
            },
        }
    })
}

/// A list's first item; anything else as is.
fn first(value: &Value) -> Option<&Value> {
    match value {
        Value::Array(items) => items.first(),
        other => Some(other),
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The Parquet file of one type, being written.
pub struct ParquetOutput {
    writer: ArrowWriter<Box<dyn PartFile>>,
    schema: Arc<Schema>,
    pending: Vec<Row>,
    pending_bytes: usize,
    count: u64,
}

impl ParquetOutput {
    pub fn new(part: Box<dyn PartFile>, resource_type: &str) -> io::Result<Self> {
        let schema = schema(resource_type);
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .set_max_row_group_size(ROW_GROUP_ROWS)
            .build();
        let writer =
            ArrowWriter::try_new(part, schema.clone(), Some(props)).map_err(io::Error::other)?;
        Ok(Self {
            writer,
            schema,
            pending: Vec::with_capacity(ROW_GROUP_ROWS),
            pending_bytes: 0,
            count: 0,
        })
    }

    pub fn push(&mut self, row: Row) -> io::Result<()> {
        self.pending_bytes += row.resource.len();
        self.pending.push(row);
        self.count += 1;
        if self.pending.len() >= ROW_GROUP_ROWS || self.pending_bytes >= ROW_GROUP_BYTES {
            self.write_row_group()?;
        }
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    fn write_row_group(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.id.as_str()))
                    .collect::<StringArray>(),
            ),
            Arc::new(
                TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.last_updated_ms).collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.version_id.as_str()))
                    .collect::<StringArray>(),
            ),
            Arc::new(
                rows.iter()
                    .map(|r| r.patient.as_deref())
                    .collect::<StringArray>(),
            ),
        ];
        for n in 0..FLATTENED.len() {
            columns.push(Arc::new(
                rows.iter()
                    .map(|r| r.flattened[n].as_deref())
                    .collect::<StringArray>(),
            ));
        }
        columns.push(Arc::new(
            rows.iter()
                .map(|r| Some(r.resource.as_str()))
                .collect::<StringArray>(),
        ));
        drop(rows);
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(io::Error::other)?;
        self.writer.write(&batch).map_err(io::Error::other)?;
        // One batch, one row group: nothing of it stays buffered.
        self.writer.flush().map_err(io::Error::other)
    }

    /// Writes what is buffered and the footer, and publishes the file; returns its rows.
    pub fn commit(mut self) -> io::Result<u64> {
        self.write_row_group()?;
        let part = self.writer.into_inner().map_err(io::Error::other)?;
        part.commit()?;
        Ok(self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn common_elements_are_flattened_from_the_first_path_present() {
        let observation = json!({
            "resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/p1"},
            "effectivePeriod": {"start": "2024-01-02"},
        });
        let row = Row::new(&observation, String::new(), 0, "1".into(), None);
        assert_eq!(
            row.flattened,
            vec![
                Some("final".into()),
                Some("http://loinc.org|8867-4".into()),
                Some("Patient/p1".into()),
                Some("2024-01-02".into()),
            ]
        );
        let immunization = json!({
            "resourceType": "Immunization", "id": "i1",
            "vaccineCode": {"coding": [{"code": "207"}]},
            "patient": {"reference": "Patient/p2"},
            "occurrenceDateTime": "2021-05-01",
        });
        let row = Row::new(&immunization, String::new(), 0, "1".into(), None);
        assert_eq!(row.flattened[1].as_deref(), Some("207"));
        assert_eq!(row.flattened[2].as_deref(), Some("Patient/p2"));
        assert_eq!(row.flattened[3].as_deref(), Some("2021-05-01"));
        assert_eq!(row.flattened[0], None);
    }
}
