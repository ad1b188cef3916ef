//! What a searcher may see of each resource type. A search applies it to its matches before it
//! counts, sorts or pages them, and to every chain and `_has` sub-search, so neither `total`
//! nor a chained match says anything about resources the searcher may not see.
//!
//! The index knows nothing of tokens or scopes: the FHIR API implements this trait with the
//! request's access context (`src/fhir/search/grant.rs`).

use serde_json::Value;

pub trait Visibility {
    /// The patient whose compartment every visible `resource_type` resource is in, when the
    /// searcher reaches only that patient's data (a term of the index narrows to it).
    fn compartment(&self, resource_type: &str) -> Option<&str>;

    /// Whether, within [`Visibility::compartment`], each `resource_type` resource must still
    /// be shown to [`Visibility::admits`] (its content decides, as with granular scopes).
    fn checks_each(&self, resource_type: &str) -> bool;

    /// Whether the searcher may see this `resource_type` resource; asked only for the types
    /// that [`Visibility::checks_each`].
    fn admits(&self, resource_type: &str, resource: &Value) -> bool;
}

/// A searcher that sees every resource: operator tools and the index's own tests.
pub struct SeesAll;

impl Visibility for SeesAll {
    fn compartment(&self, _resource_type: &str) -> Option<&str> {
        None
    }

    fn checks_each(&self, _resource_type: &str) -> bool {
        false
    }

    fn admits(&self, _resource_type: &str, _resource: &Value) -> bool {
        true
    }
}
