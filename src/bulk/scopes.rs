//! The export worker's scope check: every resource it would write is checked with the scopes
//! the kick-off token carried (recorded in the job), through the same SMART policy the FHIR
//! API uses (`crate::smart::policy`). So a client with only
//! `system/Observation.rs?category=...|laboratory` gets lab Observations only, and a
//! patient-scoped client only its patient's compartment.
//!
//! The per-type part of the decision is made once per type; only types whose scopes filter
//! per resource (granular queries, patient context) cost a check per resource.

use std::collections::HashMap;

use serde_json::Value;
use sphere_domain::fhir::compartment::in_patient_compartment;
use sphere_domain::smart::scope::{Decision, Interaction as ScopeInteraction, ScopeSet};

use super::job::ExportAccess;
use crate::fhir::access::{AccessContext, Interaction};

/// What the scopes say about a whole type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeAccess {
    /// Every resource of the type may be exported.
    All,
    /// None may.
    Nothing,
    /// Each resource must be checked.
    EachResource,
}

pub struct ExportScopes {
    ctx: AccessContext,
    scopes: ScopeSet,
    by_type: HashMap<String, TypeAccess>,
}

impl ExportScopes {
    pub fn new(client_id: &str, access: &ExportAccess) -> Self {
        let scopes = ScopeSet::parse(&access.scopes.join(" "));
        Self {
            ctx: crate::smart::policy::context_for_scope_set(
                client_id,
                &access.scopes,
                scopes.clone(),
                access.patient.clone(),
            ),
            scopes,
            by_type: HashMap::new(),
        }
    }

    pub fn type_access(&mut self, resource_type: &str) -> TypeAccess {
        if let Some(a) = self.by_type.get(resource_type) {
            return *a;
        }
        let access = match self.scopes.decide(resource_type, ScopeInteraction::Search) {
            Decision::Deny => TypeAccess::Nothing,
            Decision::Allow {
                patient_only,
                filters,
            } => {
                if filters.is_some() || (patient_only && in_patient_compartment(resource_type)) {
                    TypeAccess::EachResource
                } else {
                    TypeAccess::All
                }
            }
        };
        self.by_type.insert(resource_type.to_owned(), access);
        access
    }

    /// May this resource be exported?
    pub fn allows(&mut self, resource_type: &str, resource: &Value) -> bool {
        match self.type_access(resource_type) {
            TypeAccess::All => true,
            TypeAccess::Nothing => false,
            TypeAccess::EachResource => self
                .ctx
                .check(Interaction::SearchType, Some(resource_type), Some(resource))
                .is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn granular_scopes_keep_only_matching_resources() {
        let mut s = ExportScopes::new(
            "c",
            &ExportAccess {
                scopes: vec!["system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory".into(), "system/Patient.rs".into()],
                patient: None,
            },
        );
        let lab = json!({"resourceType": "Observation", "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]});
        let vital = json!({"resourceType": "Observation", "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}]});
        assert!(s.allows("Observation", &lab));
        assert!(!s.allows("Observation", &vital));
        assert_eq!(s.type_access("Patient"), TypeAccess::All);
        assert_eq!(s.type_access("Condition"), TypeAccess::Nothing);
    }
}
