//! How the asker's grant shapes a search before it runs, so that what the search reveals
//! (entries, `total`, `_summary=count`, the membership a chain or `_has` tests) stays within
//! what the grant may see:
//!
//! - every type a chain or `_has` crosses must be searchable, as a direct search of it would
//!   have to be ([`authorize_traversals`]);
//! - a granular grant's query (`category=...|laboratory`) is added to the search's own
//!   parameters where it can be, so the index narrows to it ([`fold_granted_queries`]);
//! - the index applies the grant to every match and every sub-search: the patient compartment
//!   of patient-only grants as an index term, granular grants by checking each resource
//!   (`impl Visibility for AccessContext`).

use serde_json::Value;
use sphere_domain::fhir::search_query::{self, Clause, ParseOptions, SearchQuery};
use sphere_projections::search_index::Visibility;

use super::SearchError;
use crate::fhir::access::{AccessContext, Denied, Interaction};

/// Refuses (403) a chain or `_has` that crosses a type the grant may not search, as a search
/// of that type would be refused. A chain that names no type (`subject.name=x`) keeps the
/// target types the grant may search and is refused only when none is left.
pub(super) fn authorize_traversals(
    ctx: &AccessContext,
    query: &mut SearchQuery,
) -> Result<(), SearchError> {
    for clause in &mut query.clauses {
        authorize_clause(ctx, clause)?;
    }
    Ok(())
}

fn authorize_clause(ctx: &AccessContext, clause: &mut Clause) -> Result<(), Denied> {
    match clause {
        Clause::Param { .. } => Ok(()),
        Clause::Chain {
            target_types,
            inner,
            ..
        } => {
            let mut refused = None;
            target_types.retain(
                |t| match ctx.check(Interaction::SearchType, Some(t), None) {
                    Ok(()) => true,
                    Err(denied) => {
                        refused.get_or_insert(denied);
                        false
                    }
                },
            );
            if let Some(denied) = refused.filter(|_| target_types.is_empty()) {
                return Err(denied);
            }
            authorize_clause(ctx, inner)
        }
        Clause::Has {
            source_type, inner, ..
        } => {
            ctx.check(Interaction::SearchType, Some(source_type), None)?;
            authorize_clause(ctx, inner)
        }
    }
}

/// ANDs the grant's granular query into `query` (as HAPI FHIR's search narrowing does), so the
/// index selects only the granted categories and no match is read just to be dropped. Only
/// what the search parameters can say exactly is folded in: one query, or one parameter whose
/// granted values are OR-ed (two `category=` scopes). Anything else is left to the check of
/// each match, which decides in every case.
pub(super) fn fold_granted_queries(ctx: &AccessContext, query: &mut SearchQuery, base_url: &str) {
    let Some(queries) = ctx.granted_queries(Interaction::SearchType, &query.resource_type) else {
        return;
    };
    let pairs = match queries.as_slice() {
        [one] => one.clone(),
        [first, ..] => {
            let name = match first.as_slice() {
                [(name, _)] => name,
                _ => return,
            };
            let mut values = Vec::with_capacity(queries.len());
            for q in &queries {
                match q.as_slice() {
                    [(n, v)] if n == name => values.push(v.as_str()),
                    _ => return,
                }
            }
            vec![(name.clone(), values.join(","))]
        }
        [] => return,
    };
    let options = ParseOptions {
        strict: true,
        base_url: base_url.to_owned(),
    };
    // A parameter the type does not have cannot be folded; the check of each match (which
    // then admits nothing) still decides.
    if let Ok(granted) = search_query::parse(&query.resource_type, &pairs, &options) {
        query.clauses.extend(granted.clauses);
    }
}

impl Visibility for AccessContext {
    fn compartment(&self, resource_type: &str) -> Option<&str> {
        self.confined_to_patient(Interaction::SearchType, resource_type)
    }

    fn checks_each(&self, resource_type: &str) -> bool {
        self.checks_content(Interaction::SearchType, resource_type)
    }

    fn admits(&self, resource_type: &str, resource: &Value) -> bool {
        self.check(Interaction::SearchType, Some(resource_type), Some(resource))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smart::policy::context_for_scopes;

    const LAB: &str = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
    const VITALS: &str = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs";

    fn ctx(scopes: &str) -> AccessContext {
        let scopes: Vec<String> = scopes.split(' ').map(str::to_owned).collect();
        context_for_scopes("app", &scopes, Some("p1".into()))
    }

    fn parse(resource_type: &str, query: &str) -> SearchQuery {
        let pairs = super::super::parse_pairs(query);
        search_query::parse(resource_type, &pairs, &ParseOptions::default()).unwrap()
    }

    fn folded(scopes: &str) -> usize {
        let mut q = parse("Observation", "code=718-7");
        fold_granted_queries(&ctx(scopes), &mut q, "");
        q.clauses.len() - 1
    }

    #[test]
    fn granular_queries_are_folded_when_the_search_parameters_can_say_them() {
        assert_eq!(folded("user/Observation.rs"), 0);
        assert_eq!(folded(&format!("user/Observation.rs?category={LAB}")), 1);
        assert_eq!(
            folded(&format!(
                "user/Observation.rs?category={LAB} user/Observation.rs?category={VITALS}"
            )),
            1,
            "one category clause, its values OR-ed"
        );
        assert_eq!(
            folded(&format!("user/Observation.rs?category={LAB}&status=final")),
            2
        );
        assert_eq!(
            folded(&format!(
                "user/Observation.rs?category={LAB} user/Observation.rs?status=final"
            )),
            0,
            "an OR across parameters is left to the check of each match"
        );
        assert_eq!(
            folded("user/Observation.rs?category=x user/Observation.rs"),
            0,
            "a whole-type scope: nothing to narrow"
        );
    }

    #[test]
    fn chains_keep_the_target_types_the_grant_may_search() {
        let c = ctx("user/Observation.rs user/Patient.rs");
        let mut q = parse("Observation", "subject.name=Doe");
        authorize_traversals(&c, &mut q).unwrap();
        let Clause::Chain { target_types, .. } = &q.clauses[0] else {
            panic!("{q:?}");
        };
        assert_eq!(target_types, &["Patient"]);

        let mut q = parse("Observation", "subject:Location.name=Ward");
        assert!(matches!(
            authorize_traversals(&c, &mut q),
            Err(SearchError::Forbidden(_))
        ));
        let mut q = parse(
            "Patient",
            "_has:Observation:subject:_has:Condition:evidence-detail:code=x",
        );
        assert!(matches!(
            authorize_traversals(&c, &mut q),
            Err(SearchError::Forbidden(_))
        ));
        let mut q = parse("Patient", "_has:Observation:subject:code=x");
        assert!(authorize_traversals(&c, &mut q).is_ok());
    }
}
