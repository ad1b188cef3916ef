//! The SMART access policy behind the FHIR API's [`AccessContext`]: a validated bearer token's
//! scopes decide type, interaction, patient compartment and granular (category) queries.
//!
//! Handlers call `ctx.check(interaction, type, None)` before they run and
//! `ctx.check(interaction, type, Some(&resource))` for each resource they would return (a
//! read, every search hit, every `_include`): the second call applies the patient compartment
//! and the granular filters, so search results are narrowed by the same rules.

use std::sync::Arc;

use serde_json::Value;
use sphere_domain::envelope::Actor;
use sphere_domain::smart::scope::{
    Context, Decision, Interaction as ScopeInteraction, ResourceScope, ScopeSet,
};

use crate::fhir::access::{AccessContext, AccessPolicy, Denied, Interaction};
use crate::smart::bearer::{AccessToken, BearerError};
use crate::smart::Smart;

/// The scopes and patient of one token.
pub struct SmartPolicy {
    scopes: ScopeSet,
    patient: Option<String>,
}

fn scope_interaction(interaction: Interaction) -> Option<ScopeInteraction> {
    Some(match interaction {
        Interaction::Read | Interaction::VRead => ScopeInteraction::Read,
        Interaction::Update | Interaction::Patch => ScopeInteraction::Update,
        Interaction::Delete => ScopeInteraction::Delete,
        Interaction::Create => ScopeInteraction::Create,
        Interaction::HistoryInstance
        | Interaction::HistoryType
        | Interaction::HistorySystem
        | Interaction::SearchType
        | Interaction::SearchSystem
        | Interaction::Operation(_) => ScopeInteraction::Search,
        Interaction::Capabilities | Interaction::Validate => return None,
    })
}

/// Whether `resource` belongs to `patient`'s compartment: the Patient itself, or a resource
/// that references `Patient/{patient}` (the compartment's links are all references).
pub fn in_compartment(resource: &Value, patient: &str) -> bool {
    if resource["resourceType"] == "Patient" {
        return resource["id"].as_str() == Some(patient);
    }
    let wanted = format!("Patient/{patient}");
    fn walk(v: &Value, wanted: &str) -> bool {
        match v {
            Value::Object(map) => map.iter().any(|(k, v)| {
                (k == "reference"
                    && v.as_str()
                        .is_some_and(|r| r == wanted || r.ends_with(&format!("/{wanted}"))))
                    || walk(v, wanted)
            }),
            Value::Array(items) => items.iter().any(|i| walk(i, wanted)),
            _ => false,
        }
    }
    walk(resource, &wanted)
}

/// How a grant depends on the content of each resource.
struct GrantShape {
    /// Patient scopes only, on a type of the patient compartment: confined to the patient.
    compartment: bool,
    /// Granular queries, or patient and user/system scopes together: each resource decides.
    per_resource: bool,
}

impl SmartPolicy {
    /// The shape of what the scopes grant for `interaction` on `resource_type`; `None` when
    /// they grant nothing (or the interaction needs no scope).
    fn shape(&self, interaction: Interaction, resource_type: &str) -> Option<GrantShape> {
        let wanted = scope_interaction(interaction)?;
        match self.scopes.decide(resource_type, wanted) {
            Decision::Deny => None,
            Decision::Allow {
                patient_only,
                filters,
            } => Some(GrantShape {
                compartment: patient_only
                    && sphere_domain::fhir::compartment::in_patient_compartment(resource_type),
                per_resource: filters.is_some() || self.mixes_contexts(resource_type, wanted),
            }),
        }
    }

    /// The scopes granting `wanted` on `resource_type`.
    fn granting<'a>(
        &'a self,
        resource_type: &'a str,
        wanted: ScopeInteraction,
    ) -> impl Iterator<Item = &'a ResourceScope> + 'a {
        self.scopes
            .resource_scopes()
            .filter(move |r| r.applies_to(resource_type) && r.permissions.allows(wanted))
    }

    /// Both a patient scope and a user or system scope grant `wanted` on `resource_type`: the
    /// grant is their union, which [`Decision`] (one compartment rule, one set of queries)
    /// cannot say, so each resource is checked against each scope.
    fn mixes_contexts(&self, resource_type: &str, wanted: ScopeInteraction) -> bool {
        let patient = |r: &&ResourceScope| r.context == Context::Patient;
        self.granting(resource_type, wanted).any(|r| patient(&r))
            && self.granting(resource_type, wanted).any(|r| !patient(&r))
    }

    /// One scope admits `resource` whole: its compartment rule and its query.
    fn any_scope_admits(
        &self,
        resource_type: &str,
        wanted: ScopeInteraction,
        resource: &Value,
    ) -> bool {
        let compartmented = sphere_domain::fhir::compartment::in_patient_compartment(resource_type);
        self.granting(resource_type, wanted).any(|r| {
            let inside = r.context != Context::Patient
                || !compartmented
                || self
                    .patient
                    .as_deref()
                    .is_some_and(|p| in_compartment(resource, p));
            inside && r.query_matches(resource)
        })
    }
}

impl AccessPolicy for SmartPolicy {
    fn check(
        &self,
        _ctx: &AccessContext,
        interaction: Interaction,
        resource_type: Option<&str>,
        resource: Option<&Value>,
    ) -> Result<(), Denied> {
        let Some(wanted) = scope_interaction(interaction) else {
            return Ok(());
        };
        let resource_type =
            resource_type.or_else(|| resource.and_then(|r| r["resourceType"].as_str()));
        let Some(resource_type) = resource_type else {
            // A system-level search or history: allowed when some scope searches at all;
            // each result is then checked with its type.
            return if self
                .scopes
                .resource_scopes()
                .any(|r| r.permissions.allows(wanted))
            {
                Ok(())
            } else {
                Err(Denied::Forbidden("insufficient_scope".into()))
            };
        };
        let decision = self.scopes.decide(resource_type, wanted);
        let Decision::Allow {
            patient_only,
            filters,
        } = decision
        else {
            return Err(Denied::Forbidden(format!(
                "insufficient_scope: the token grants no {wanted:?} access to {resource_type}"
            )));
        };
        let Some(resource) = resource else {
            return Ok(());
        };
        if self.mixes_contexts(resource_type, wanted) {
            // Patient and user/system scopes together: the resource must pass one scope whole
            // (its compartment rule and its query), not the loosest of each.
            return if self.any_scope_admits(resource_type, wanted, resource) {
                Ok(())
            } else {
                Err(Denied::Forbidden(
                    "insufficient_scope: outside every granted scope".into(),
                ))
            };
        }
        if patient_only && sphere_domain::fhir::compartment::in_patient_compartment(resource_type) {
            let inside = self
                .patient
                .as_deref()
                .is_some_and(|p| in_compartment(resource, p));
            if !inside {
                return Err(Denied::Forbidden(
                    "insufficient_scope: outside the patient in context".into(),
                ));
            }
        }
        if filters.is_some() && !self.scopes.permits(resource, wanted) {
            return Err(Denied::Forbidden(
                "insufficient_scope: outside the granted categories".into(),
            ));
        }
        Ok(())
    }

    fn patient_only(&self, interaction: Interaction, resource_type: &str) -> bool {
        self.shape(interaction, resource_type)
            .is_some_and(|shape| shape.compartment)
    }

    fn checks_content(&self, interaction: Interaction, resource_type: &str) -> bool {
        match self.shape(interaction, resource_type) {
            // Nothing of the type is visible: the check refuses each resource.
            None => scope_interaction(interaction).is_some(),
            Some(shape) => {
                shape.per_resource
                    // Patient scopes without a patient in context confine no search to a
                    // compartment: each resource is then refused by the check. And the index
                    // puts a Patient in the compartment of every patient its `link` names,
                    // where the check admits the patient's own resource only.
                    || (shape.compartment
                        && (self.patient.is_none() || resource_type == "Patient"))
            }
        }
    }

    fn granted_queries(
        &self,
        interaction: Interaction,
        resource_type: &str,
    ) -> Option<Vec<Vec<(String, String)>>> {
        let wanted = scope_interaction(interaction)?;
        if self.mixes_contexts(resource_type, wanted) {
            // A patient scope's query does not bind the user scope's resources (nor the other
            // way round): no query can be added to the search; each match is checked instead.
            return None;
        }
        match self.scopes.decide(resource_type, wanted) {
            Decision::Allow { filters, .. } => filters,
            Decision::Deny => None,
        }
    }

    fn checks_each_resource(&self, interaction: Interaction, resource_type: &str) -> bool {
        // Denied as a whole: the type-level check refuses before any resource is read.
        self.shape(interaction, resource_type)
            .is_some_and(|shape| shape.per_resource || shape.compartment)
    }
}

/// The policy of a request without any credentials: it may read the CapabilityStatement (and
/// `$validate`), everything else is 401.
pub struct Anonymous;

impl AccessPolicy for Anonymous {
    fn check(
        &self,
        _ctx: &AccessContext,
        interaction: Interaction,
        _resource_type: Option<&str>,
        _resource: Option<&Value>,
    ) -> Result<(), Denied> {
        match interaction {
            Interaction::Capabilities | Interaction::Validate => Ok(()),
            _ => Err(Denied::Unauthenticated("a bearer token is required".into())),
        }
    }
}

/// The access context for a validated token.
pub fn context_for(token: AccessToken) -> AccessContext {
    let policy = Arc::new(SmartPolicy {
        scopes: token.scopes.clone(),
        patient: token.claims.patient.clone(),
    });
    let actor = Actor {
        client_id: Some(token.claims.client_id.clone()),
        user: token.username.clone(),
        token_id: Some(token.claims.jti.clone()),
    };
    let scopes = token.scopes.iter().map(|(t, _)| t.to_owned()).collect();
    AccessContext::new(actor, scopes, token.claims.patient.clone(), policy)
        .with_encounter(token.claims.encounter.clone())
        .with_fhir_user(token.fhir_user.clone())
}

/// An access context rebuilt from recorded scope strings (an export job checks each exported
/// resource with the scopes its kick-off token carried).
pub fn context_for_scopes(
    client_id: &str,
    scopes: &[String],
    patient: Option<String>,
) -> AccessContext {
    context_for_scope_set(
        client_id,
        scopes,
        ScopeSet::parse(&scopes.join(" ")),
        patient,
    )
}

/// As [`context_for_scopes`], with the scopes already parsed (`parsed` is `scopes`).
pub fn context_for_scope_set(
    client_id: &str,
    scopes: &[String],
    parsed: ScopeSet,
    patient: Option<String>,
) -> AccessContext {
    let policy = Arc::new(SmartPolicy {
        scopes: parsed,
        patient: patient.clone(),
    });
    let actor = Actor {
        client_id: Some(client_id.to_owned()),
        user: None,
        token_id: None,
    };
    AccessContext::new(actor, scopes.to_vec(), patient, policy)
}

/// What the FHIR API's extractor does with an `Authorization` header.
pub fn access_context(smart: &Smart, authorization: Option<&str>) -> Result<AccessContext, Denied> {
    match smart.validate_bearer(authorization) {
        Ok(token) => Ok(context_for(token)),
        Err(BearerError::Missing) if authorization.is_none() => Ok(AccessContext::new(
            Actor::default(),
            Vec::new(),
            None,
            Arc::new(Anonymous),
        )),
        Err(BearerError::RateLimited(seconds)) => Err(Denied::RateLimited(seconds)),
        Err(e) => Err(Denied::Unauthenticated(format!("invalid_token: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(scopes: &str, patient: Option<&str>) -> AccessContext {
        AccessContext::new(
            Actor::default(),
            vec![],
            patient.map(str::to_owned),
            Arc::new(SmartPolicy {
                scopes: ScopeSet::parse(scopes),
                patient: patient.map(str::to_owned),
            }),
        )
    }

    #[test]
    fn patient_scopes_stay_in_the_patients_compartment() {
        let c = ctx("patient/Observation.rs patient/Patient.r", Some("p1"));
        let mine = json!({"resourceType": "Observation", "subject": {"reference": "Patient/p1"}});
        let theirs = json!({"resourceType": "Observation", "subject": {"reference": "Patient/p2"}});
        assert!(c
            .check(Interaction::SearchType, Some("Observation"), None)
            .is_ok());
        assert!(c
            .check(Interaction::SearchType, Some("Observation"), Some(&mine))
            .is_ok());
        assert!(c
            .check(Interaction::Read, Some("Observation"), Some(&theirs))
            .is_err());
        assert!(c
            .check(
                Interaction::Read,
                Some("Patient"),
                Some(&json!({"resourceType": "Patient", "id": "p1"}))
            )
            .is_ok());
        assert!(c
            .check(
                Interaction::Read,
                Some("Patient"),
                Some(&json!({"resourceType": "Patient", "id": "p2"}))
            )
            .is_err());
        assert!(matches!(
            c.check(Interaction::Read, Some("Condition"), None),
            Err(Denied::Forbidden(_))
        ));
        assert!(matches!(
            c.check(Interaction::Create, Some("Observation"), None),
            Err(Denied::Forbidden(_))
        ));
        assert!(c.check(Interaction::Capabilities, None, None).is_ok());
    }

    #[test]
    fn a_patient_scope_and_a_granular_user_scope_grant_their_union_not_everything() {
        let c = ctx("patient/Observation.rs user/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory", Some("p1"));
        let obs = |patient: &str, category: &str| json!({"resourceType": "Observation", "subject": {"reference": format!("Patient/{patient}")}, "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}]});
        let read = |r: &Value| {
            c.check(Interaction::Read, Some("Observation"), Some(r))
                .is_ok()
        };
        assert!(
            read(&obs("p1", "vital-signs")),
            "the patient scope: p1's every category"
        );
        assert!(
            read(&obs("p2", "laboratory")),
            "the user scope: any patient's labs"
        );
        assert!(
            !read(&obs("p2", "vital-signs")),
            "neither scope: another patient's vitals"
        );
        assert!(c.checks_each_resource(Interaction::SearchType, "Observation"));
        assert!(c
            .granted_queries(Interaction::SearchType, "Observation")
            .is_none());
        assert!(c
            .confined_to_patient(Interaction::SearchType, "Observation")
            .is_none());
    }

    #[test]
    fn granular_scopes_filter_each_resource() {
        let c = ctx("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory", Some("p1"));
        let lab = json!({"resourceType": "Observation", "subject": {"reference": "Patient/p1"}, "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]});
        let vitals = json!({"resourceType": "Observation", "subject": {"reference": "Patient/p1"}, "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}]});
        assert!(c
            .check(Interaction::SearchType, Some("Observation"), Some(&lab))
            .is_ok());
        assert!(c
            .check(Interaction::SearchType, Some("Observation"), Some(&vitals))
            .is_err());
    }

    #[test]
    fn searches_check_content_only_where_the_compartment_does_not_decide() {
        let patient = ctx("patient/Observation.rs patient/Patient.rs", Some("p1"));
        assert!(!patient.checks_content(Interaction::SearchType, "Observation"));
        assert!(
            patient.checks_content(Interaction::SearchType, "Patient"),
            "the index's compartment holds the Patients that link to p1; the check does not"
        );
        assert_eq!(
            patient.confined_to_patient(Interaction::SearchType, "Observation"),
            Some("p1")
        );
        assert!(
            patient.checks_content(Interaction::SearchType, "Condition"),
            "no scope: nothing is admitted"
        );
        let granular = ctx(
            "user/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
            None,
        );
        assert!(granular.checks_content(Interaction::SearchType, "Observation"));
        assert_eq!(
            granular
                .granted_queries(Interaction::SearchType, "Observation")
                .map(|q| q.len()),
            Some(1)
        );
        let no_patient = ctx("patient/Observation.rs", None);
        assert!(no_patient.checks_content(Interaction::SearchType, "Observation"));
    }

    #[test]
    fn system_scopes_reach_every_patient() {
        let c = ctx("system/*.rs", None);
        let any = json!({"resourceType": "Observation", "subject": {"reference": "Patient/p9"}});
        assert!(c
            .check(Interaction::Read, Some("Observation"), Some(&any))
            .is_ok());
        assert!(c
            .check(Interaction::Update, Some("Observation"), Some(&any))
            .is_err());
    }
}
