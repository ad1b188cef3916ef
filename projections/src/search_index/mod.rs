//! The FHIR search index: a tantivy index of every current resource version, one document per
//! resource, its search parameters as terms (see `document.rs`) and its JSON stored.
//!
//! The projection ([`SearchIndexProjection`]) is fed resource events by the runner: a create or
//! update replaces the resource's document, a delete removes it. Each commit stores the log
//! position in tantivy's commit payload, so the index and its checkpoint are written by the
//! same atomic meta.json swap and can never disagree. Queries go through a [`SearchIndex`]
//! handle, which hands out [`Snapshot`]s: one consistent searcher per request.

mod document;
pub mod evaluate;
mod schema;
mod snapshot;
mod visibility;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use sphere_domain::envelope::{EventFilter, Position, RecordedEvent};
use sphere_domain::resource::{self, RESOURCE_DELETED};
use tantivy::directory::MmapDirectory;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::{Projection, ProjectionError};

pub use schema::Fields;
pub use snapshot::{order_hits, Hit, SearchIndexError, Snapshot, SortKey, StoredResource};
/// Where a hit lives in the index (re-exported so callers need no tantivy dependency).
pub use tantivy::DocAddress;
pub use visibility::{SeesAll, Visibility};

/// Memory tantivy may buffer before it writes a segment (more: fewer, larger segments while
/// rebuilding).
/// The index format this version writes; bump it when the terms indexed for a parameter or
/// the index settings change, so older indexes are rebuilt (2: `_text`/`_content` words, no
/// zstd in fast-field dictionaries).
const FORMAT: u32 = 2;
const FORMAT_FILE: &str = "sphere-index-format";

const WRITER_MEMORY: usize = 192 * 1024 * 1024;
/// Doc-store blocks each searcher keeps decompressed: result pages read neighbouring docs.
const DOC_STORE_CACHE_BLOCKS: usize = 256;

/// The search projection (the writing side).
pub struct SearchIndexProjection {
    dir: PathBuf,
    writer: IndexWriter,
    reader: IndexReader,
    fields: Fields,
    base_url: Arc<str>,
    checkpoint: Option<Position>,
}

/// A read handle on the search index; cheap to clone.
#[derive(Clone)]
pub struct SearchIndex {
    reader: IndexReader,
    fields: Fields,
    base_url: Arc<str>,
}

fn storage(e: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Storage(format!("search index: {e}"))
}

impl SearchIndexProjection {
    pub const NAME: &'static str = "search";

    /// Opens (or creates) the index in `dir`. `base_url` is this server's FHIR base, so that
    /// absolute references to it index as `Type/id`. An index whose schema is not this
    /// version's is dropped and rebuilt from the log.
    pub fn open(dir: &Path, base_url: &str) -> Result<Self, ProjectionError> {
        std::fs::create_dir_all(dir).map_err(storage)?;
        let (schema, fresh_fields) = schema::build();
        // What this version writes beyond the schema (the terms of each parameter, the index
        // settings): an index written by another format is dropped and rebuilt from the log.
        let format_file = dir.join(FORMAT_FILE);
        let same_format =
            std::fs::read_to_string(&format_file).is_ok_and(|f| f.trim() == FORMAT.to_string());
        let existing = dir.join("meta.json").exists();
        if existing && !same_format {
            std::fs::remove_dir_all(dir).map_err(storage)?;
            std::fs::create_dir_all(dir).map_err(storage)?;
        }
        let existing = existing && same_format;
        let mut index = None;
        if existing {
            match Index::open_in_dir(dir) {
                Ok(i) if schema::fields_of(&i.schema()).is_some() && i.schema() == schema => {
                    index = Some(i)
                }
                // Another schema or a damaged index: drop it, and the runner replays the log
                // into a fresh one (the checkpoint goes with the files).
                Ok(_) | Err(_) => {
                    std::fs::remove_dir_all(dir).map_err(storage)?;
                    std::fs::create_dir_all(dir).map_err(storage)?;
                }
            }
        }
        let index = match index {
            Some(i) => i,
            None => {
                let directory = MmapDirectory::open(dir).map_err(storage)?;
                Index::create(directory, schema, tantivy::IndexSettings::default())
                    .map_err(storage)?
            }
        };
        if !same_format {
            std::fs::write(&format_file, FORMAT.to_string()).map_err(storage)?;
        }
        let fields = schema::fields_of(&index.schema()).unwrap_or(fresh_fields);
        let checkpoint = index
            .load_metas()
            .map_err(storage)?
            .payload
            .and_then(|p| p.parse::<u64>().ok())
            .map(Position);
        let writer = index
            .writer_with_num_threads(1, WRITER_MEMORY)
            .map_err(storage)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .doc_store_cache_num_blocks(DOC_STORE_CACHE_BLOCKS)
            .try_into()
            .map_err(storage)?;
        Ok(Self {
            dir: dir.to_owned(),
            writer,
            reader,
            fields,
            base_url: Arc::from(base_url.trim_end_matches('/')),
            checkpoint,
        })
    }

    /// A read handle that sees each commit.
    pub fn handle(&self) -> SearchIndex {
        SearchIndex {
            reader: self.reader.clone(),
            fields: self.fields,
            base_url: self.base_url.clone(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Resources in the last commit.
    pub fn num_resources(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    fn document(
        &self,
        event: &RecordedEvent,
        resource_type: &str,
        id: &str,
    ) -> Result<TantivyDocument, ProjectionError> {
        let bad = |message: String| ProjectionError::BadEvent {
            position: event.position,
            message,
        };
        let json: Value = serde_json::from_slice(&event.data)
            .map_err(|e| bad(format!("resource body is not JSON: {e}")))?;
        let f = &self.fields;
        let mut doc = TantivyDocument::new();
        doc.add_text(f.resource_type, resource_type);
        doc.add_text(f.id, id);
        doc.add_text(f.key, format!("{resource_type}/{id}"));
        doc.add_u64(f.version, resource::version_id(event.revision));
        let last_updated = json
            .get("meta")
            .and_then(|m| m.get("lastUpdated"))
            .and_then(Value::as_str)
            .and_then(sphere_domain::fhir::search_value::parse_date)
            .map_or(event.commit_ms(), |r| r.low);
        doc.add_i64(f.last_updated, last_updated);
        doc.add_bytes(f.resource, &event.data);
        for patient in document::compartment_patients(resource_type, id, &json, &self.base_url) {
            doc.add_text(f.compartment, patient);
        }
        document::add_parameters(&mut doc, f, resource_type, &json, &self.base_url);
        Ok(doc)
    }
}

impl Projection for SearchIndexProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn checkpoint(&self) -> Option<Position> {
        self.checkpoint
    }

    /// Resource versions only: the access history (most of the log on a busy server), the
    /// SMART and export streams never touch the index.
    fn filter(&self) -> EventFilter {
        EventFilter::event_types(resource::RESOURCE_EVENTS)
    }

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        let resource_type = event.category();
        let id = event.stream_id();
        // A first version replaces nothing: skipping the delete keeps rebuilds fast.
        if event.revision > 0 {
            self.writer.delete_term(Term::from_field_text(
                self.fields.key,
                &format!("{resource_type}/{id}"),
            ));
        }
        if event.event_type == RESOURCE_DELETED {
            return Ok(());
        }
        let doc = self.document(event, resource_type, id)?;
        self.writer.add_document(doc).map_err(storage)?;
        Ok(())
    }

    fn commit(&mut self, position: Position) -> Result<(), ProjectionError> {
        let mut prepared = self.writer.prepare_commit().map_err(storage)?;
        prepared.set_payload(&position.0.to_string());
        prepared.commit().map_err(storage)?;
        // Reload before returning: the runner publishes `position` right after, and a search
        // waiting for it must then see the documents.
        self.reader.reload().map_err(storage)?;
        self.checkpoint = Some(position);
        Ok(())
    }

    fn reset(&mut self) -> Result<(), ProjectionError> {
        self.writer.delete_all_documents().map_err(storage)?;
        self.writer
            .prepare_commit()
            .map_err(storage)?
            .commit()
            .map_err(storage)?;
        self.reader.reload().map_err(storage)?;
        self.checkpoint = None;
        Ok(())
    }
}

impl SearchIndex {
    /// A consistent view of the index as of the last commit.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.reader.searcher(), self.fields, self.base_url.clone())
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

#[cfg(test)]
mod tests;
