//! Which resources a conditional interaction's search criteria (`If-None-Exist`, `PUT
//! [type]?...`, `DELETE [type]?...`, conditional Bundle entries) match: answered by the search
//! index ([`super::search::find_ids`]), in strict handling, so an unknown parameter is a 400
//! rather than a criterion silently dropped (a conditional write must never match more than
//! its author meant), and within what the author's grant may see (a match is answered with
//! the resource, and only a visible resource may be the one updated or deleted).

use super::access::{AccessContext, Interaction};
use super::outcome::FhirError;
use super::search::{self, SearchError};
use crate::app::App;

/// The ids of the current `resource_type` resources matching `criteria` (a query string,
/// `identifier=sys|123&active=true`, with or without a leading `?` or `Type?`).
pub async fn matching_ids(
    app: &App,
    ctx: &AccessContext,
    resource_type: &str,
    criteria: &str,
) -> Result<Vec<String>, FhirError> {
    // Matching is a search of the type, whatever write it serves.
    ctx.check(Interaction::SearchType, Some(resource_type), None)?;
    let query = criteria.split_once('?').map(|(_, q)| q).unwrap_or(criteria);
    if query.trim().is_empty() {
        return Err(FhirError::PreconditionFailed(
            "conditional criteria must name at least one search parameter".into(),
        ));
    }
    search::find_ids(app, ctx, resource_type, query)
        .await
        .map_err(|e| match e {
            SearchError::BadRequest(m) => {
                FhirError::BadRequest(format!("conditional criteria: {m}"))
            }
            SearchError::NotFound(m) => FhirError::NotFound(m),
            SearchError::Unavailable(m) => FhirError::Unavailable(m),
            SearchError::Forbidden(m) => FhirError::Denied(super::access::Denied::Forbidden(m)),
            SearchError::Unauthenticated(m) => {
                FhirError::Denied(super::access::Denied::Unauthenticated(m))
            }
            SearchError::RateLimited(s) => FhirError::Denied(super::access::Denied::RateLimited(s)),
            SearchError::Internal(m) => FhirError::Internal(m),
        })
}
