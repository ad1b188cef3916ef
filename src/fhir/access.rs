//! Who is asking, and may they: the access context every FHIR handler consults before it reads
//! or writes.
//!
//! Handlers never look at tokens or scopes themselves. They call [`AccessContext::check`] with
//! the interaction, the resource type and (when they have it) the resource, and turn a
//! [`Denied`] into 401/403. The decision itself belongs to an [`AccessPolicy`]: the SMART
//! authorization server (`src/smart/`) supplies one that evaluates granted scopes and the
//! patient compartment; [`AccessContext::operator`] bypasses every check and is only for
//! tests, `sphere import` and other operator tools that never face the network.
//!
//! The one place requests get their context is [`access_context`]: today it hands every
//! request the operator context (there is no token validation yet); the SMART server replaces
//! its body with bearer-token validation.

use std::sync::Arc;

use serde_json::Value;
use sphere_domain::envelope::Actor;
use warp::Filter;

/// A FHIR interaction, in the words of the CapabilityStatement (`read`, `vread`, ...) plus the
/// operations this server offers. SMART v2 scopes map onto these: `c` = Create, `r` = Read and
/// VRead, `u` = Update (and Patch), `d` = Delete, `s` = Search* and History*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interaction {
    Read,
    VRead,
    Update,
    Patch,
    Delete,
    Create,
    HistoryInstance,
    HistoryType,
    HistorySystem,
    SearchType,
    SearchSystem,
    Capabilities,
    /// A `$validate` call: reads nothing and writes nothing.
    Validate,
    /// Any other named operation (`$export`, `$everything`...).
    Operation(&'static str),
}

/// Why a request may not proceed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No (valid) credentials: 401 with `WWW-Authenticate`.
    #[error("authentication required: {0}")]
    Unauthenticated(String),
    /// Valid credentials that do not allow this: 403.
    #[error("insufficient scope: {0}")]
    Forbidden(String),
    /// The client is over its rate limit: 429 with `Retry-After` (seconds).
    #[error("too many requests: retry after {0} s")]
    RateLimited(u64),
}

/// The decision procedure behind a non-operator context (SMART scopes, patient compartment).
/// `resource` is `None` when the decision is made before a resource is at hand (a create's
/// body is given; a read is checked again once the resource is loaded, so a policy that needs
/// the resource may allow `None` and decide on the second call).
pub trait AccessPolicy: Send + Sync + 'static {
    fn check(
        &self,
        ctx: &AccessContext,
        interaction: Interaction,
        resource_type: Option<&str>,
        resource: Option<&Value>,
    ) -> Result<(), Denied>;

    /// Whether, once `interaction` on `resource_type` is allowed at all, each resource must
    /// still be checked (patient compartments, granular scopes). `false` lets a handler skip
    /// parsing resources it serves as stored. Defaults to the safe answer.
    fn checks_each_resource(&self, _interaction: Interaction, _resource_type: &str) -> bool {
        true
    }

    /// Whether the grant for `interaction` on `resource_type` reaches only the patient in
    /// context (patient-level scopes on a Patient-compartment type), so a search may be
    /// confined to that compartment (and its `total` counts nothing beyond it).
    fn patient_only(&self, _interaction: Interaction, _resource_type: &str) -> bool {
        false
    }

    /// Whether, once a search of `resource_type` is confined to the patient [`patient_only`]
    /// names (when it does), each match must still be checked with its content before it is
    /// counted or returned (granular scopes). Defaults to [`checks_each_resource`], the safe
    /// answer.
    ///
    /// [`patient_only`]: AccessPolicy::patient_only
    /// [`checks_each_resource`]: AccessPolicy::checks_each_resource
    fn checks_content(&self, interaction: Interaction, resource_type: &str) -> bool {
        self.checks_each_resource(interaction, resource_type)
    }

    /// The search parameters (SMART v2 granular queries, `category=system|code`) that limit
    /// `interaction` on `resource_type`: a resource is within the grant only if it matches
    /// every parameter of one of these queries. `None` when content does not limit the grant.
    /// A search may add them to its own parameters so the index narrows early; each match is
    /// still decided by [`AccessPolicy::check`].
    fn granted_queries(
        &self,
        _interaction: Interaction,
        _resource_type: &str,
    ) -> Option<Vec<Vec<(String, String)>>> {
        None
    }
}

/// Who is making a request and what they were granted. Cheap to clone.
#[derive(Clone)]
pub struct AccessContext {
    /// The app, user and token behind the request; written into every event's metadata so
    /// the audit view can replay who did what. Never a secret (the token id is a `jti`).
    pub actor: Actor,
    /// The granted scopes as issued (`patient/Observation.rs`, `user/*.cruds`...). Informational
    /// for handlers; the [`AccessPolicy`] interprets them.
    pub scopes: Vec<String>,
    /// The patient in context (`launch/patient`), when the grant is patient-scoped.
    pub patient: Option<String>,
    /// The encounter in context (EHR launch), if any.
    pub encounter: Option<String>,
    /// The `fhirUser` of the grant (`Practitioner/123`), if any.
    pub fhir_user: Option<String>,
    /// `None` only for the operator context.
    policy: Option<Arc<dyn AccessPolicy>>,
}

impl std::fmt::Debug for AccessContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessContext")
            .field("actor", &self.actor)
            .field("scopes", &self.scopes)
            .field("patient", &self.patient)
            .field("encounter", &self.encounter)
            .field("fhir_user", &self.fhir_user)
            .field("operator", &self.is_operator())
            .finish()
    }
}

impl AccessContext {
    /// A context for an authenticated client: `policy` decides every check. Used by the SMART
    /// layer once it has validated a bearer token.
    pub fn new(
        actor: Actor,
        scopes: Vec<String>,
        patient: Option<String>,
        policy: Arc<dyn AccessPolicy>,
    ) -> Self {
        Self {
            actor,
            scopes,
            patient,
            encounter: None,
            fhir_user: None,
            policy: Some(policy),
        }
    }

    /// The operator: allowed everything. Only for tests and operator tools (`sphere import`);
    /// never handed to a network client once token validation exists.
    pub fn operator() -> Self {
        Self {
            actor: Actor {
                client_id: Some("sphere-operator".into()),
                user: None,
                token_id: None,
            },
            scopes: vec!["system/*.cruds".into()],
            patient: None,
            encounter: None,
            fhir_user: None,
            policy: None,
        }
    }

    pub fn with_encounter(mut self, encounter: Option<String>) -> Self {
        self.encounter = encounter;
        self
    }

    pub fn with_fhir_user(mut self, fhir_user: Option<String>) -> Self {
        self.fhir_user = fhir_user;
        self
    }

    pub fn is_operator(&self) -> bool {
        self.policy.is_none()
    }

    /// Whether each resource of `resource_type` must be checked with its content (see
    /// [`AccessPolicy::checks_each_resource`]); never for the operator.
    pub fn checks_each_resource(&self, interaction: Interaction, resource_type: &str) -> bool {
        match &self.policy {
            None => false,
            Some(policy) => policy.checks_each_resource(interaction, resource_type),
        }
    }

    /// Whether each `resource_type` match of a search must be checked with its content once
    /// the search is confined to [`AccessContext::confined_to_patient`] (see
    /// [`AccessPolicy::checks_content`]); never for the operator.
    pub fn checks_content(&self, interaction: Interaction, resource_type: &str) -> bool {
        match &self.policy {
            None => false,
            Some(policy) => policy.checks_content(interaction, resource_type),
        }
    }

    /// The granular queries that limit `interaction` on `resource_type` (see
    /// [`AccessPolicy::granted_queries`]); none for the operator.
    pub fn granted_queries(
        &self,
        interaction: Interaction,
        resource_type: &str,
    ) -> Option<Vec<Vec<(String, String)>>> {
        self.policy
            .as_ref()
            .and_then(|policy| policy.granted_queries(interaction, resource_type))
    }

    /// The patient a search of `resource_type` must stay within, when the grant is
    /// patient-only (see [`AccessPolicy::patient_only`]).
    pub fn confined_to_patient(
        &self,
        interaction: Interaction,
        resource_type: &str,
    ) -> Option<&str> {
        match &self.policy {
            Some(policy) if policy.patient_only(interaction, resource_type) => {
                self.patient.as_deref()
            }
            _ => None,
        }
    }

    /// [`AccessContext::check`] of a stored resource (`body`, its JSON): parsed only when
    /// the grant depends on content (patient compartment, granular scopes). A stored body
    /// that is not JSON is an internal error, never a reason to allow.
    pub fn check_stored(
        &self,
        interaction: Interaction,
        resource_type: &str,
        body: &[u8],
    ) -> Result<(), super::outcome::FhirError> {
        if !self.checks_each_resource(interaction, resource_type) {
            return Ok(self.check(interaction, Some(resource_type), None)?);
        }
        let resource: Value = serde_json::from_slice(body).map_err(|_| {
            super::outcome::FhirError::Internal("a stored resource is not JSON".into())
        })?;
        Ok(self.check(interaction, Some(resource_type), Some(&resource))?)
    }

    /// May this context perform `interaction` on `resource_type` (and this `resource`, when
    /// known)? Handlers call this before reading or writing, and again with the resource once
    /// it is loaded.
    pub fn check(
        &self,
        interaction: Interaction,
        resource_type: Option<&str>,
        resource: Option<&Value>,
    ) -> Result<(), Denied> {
        match &self.policy {
            None => Ok(()),
            Some(policy) => policy.check(self, interaction, resource_type, resource),
        }
    }
}

/// The access context of a request. THE place where authentication plugs in: today every
/// request gets [`AccessContext::operator`], because the SMART server that validates tokens is
/// being built alongside; it will replace this body with "read `Authorization: Bearer`,
/// validate the token, build [`AccessContext::new`] with its policy, or reject with 401".
/// The header is already extracted so the signature need not change.
pub fn access_context(
) -> impl Filter<Extract = (Result<AccessContext, Denied>,), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("authorization").map(|authorization: Option<String>| {
        let ctx = match crate::smart::bearer::installed() {
            Some(smart) => crate::smart::policy::access_context(&smart, authorization.as_deref()),
            // No authorization server in this process: nobody is authenticated.
            None => Err(Denied::Unauthenticated("no authorization server".into())),
        };
        if let Ok(ctx) = &ctx {
            crate::audit::note(|n| {
                n.actor(&ctx.actor);
            });
        }
        ctx
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ReadOnly;
    impl AccessPolicy for ReadOnly {
        fn check(
            &self,
            _: &AccessContext,
            interaction: Interaction,
            _: Option<&str>,
            _: Option<&Value>,
        ) -> Result<(), Denied> {
            match interaction {
                Interaction::Read | Interaction::VRead => Ok(()),
                other => Err(Denied::Forbidden(format!("{other:?} not granted"))),
            }
        }
    }

    #[test]
    fn operator_may_do_anything_and_a_policy_decides_for_everyone_else() {
        let op = AccessContext::operator();
        assert!(op.is_operator());
        assert!(op.check(Interaction::Delete, Some("Patient"), None).is_ok());
        let app = AccessContext::new(
            Actor::default(),
            vec!["patient/Patient.r".into()],
            Some("1".into()),
            Arc::new(ReadOnly),
        );
        assert!(!app.is_operator());
        assert!(app.check(Interaction::Read, Some("Patient"), None).is_ok());
        assert!(matches!(
            app.check(Interaction::Create, Some("Patient"), None),
            Err(Denied::Forbidden(_))
        ));
    }
}
