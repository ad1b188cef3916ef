//! The index schema: a fixed set of fields shared by every resource type (see `document.rs`
//! for the term layout), so adding a search parameter never changes the schema.

use tantivy::schema::{Field, Schema, FAST, INDEXED, STORED, STRING};

#[derive(Debug, Clone, Copy)]
pub struct Fields {
    pub resource_type: Field,
    pub id: Field,
    /// `Type/id`: the unique key a new version or a deletion replaces.
    pub key: Field,
    pub version: Field,
    pub last_updated: Field,
    pub resource: Field,
    pub compartment: Field,
    pub has: Field,
    pub terms: Field,
    pub strings: Field,
    pub exact: Field,
    pub texts: Field,
}

pub fn build() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fields = Fields {
        resource_type: b.add_text_field("type", STRING | STORED),
        id: b.add_text_field("id", STRING | FAST | STORED),
        key: b.add_text_field("key", STRING),
        version: b.add_u64_field("version", STORED),
        last_updated: b.add_i64_field("last_updated", INDEXED | FAST | STORED),
        resource: b.add_bytes_field("resource", STORED),
        compartment: b.add_text_field("compartment", STRING),
        has: b.add_text_field("has", STRING),
        terms: b.add_text_field("terms", STRING),
        strings: b.add_text_field("strings", STRING),
        exact: b.add_text_field("exact", STRING),
        texts: b.add_text_field("texts", STRING),
    };
    (b.build(), fields)
}

/// Looks the fields up in an existing index's schema (by name, so an index written by this
/// version opens with the same handles).
pub fn fields_of(schema: &Schema) -> Option<Fields> {
    let f = |name: &str| schema.get_field(name).ok();
    Some(Fields {
        resource_type: f("type")?,
        id: f("id")?,
        key: f("key")?,
        version: f("version")?,
        last_updated: f("last_updated")?,
        resource: f("resource")?,
        compartment: f("compartment")?,
        has: f("has")?,
        terms: f("terms")?,
        strings: f("strings")?,
        exact: f("exact")?,
        texts: f("texts")?,
    })
}
