//! The SMART scope grammar (v1 and v2) and the decisions drawn from it.
//!
//! One table of facts for scopes: the authorization server uses it to decide what may be
//! granted and to describe scopes on the consent page, the FHIR API uses it to decide what a
//! token may touch. Unknown scopes are dropped, never an error (SMART App Launch 2.2.0 3.2).

use serde_json::Value;

/// Whose data a resource scope reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    /// The patient in context (the patient compartment only).
    Patient,
    /// Whatever the signed-in user may see.
    User,
    /// A backend service, no user.
    System,
}

impl Context {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patient => "patient",
            Self::User => "user",
            Self::System => "system",
        }
    }
}

/// A FHIR REST interaction as scopes name it (v2 `cruds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interaction {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

/// The v2 permission letters a scope grants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Permissions {
    pub create: bool,
    pub read: bool,
    pub update: bool,
    pub delete: bool,
    pub search: bool,
}

impl Permissions {
    pub const ALL: Self = Self {
        create: true,
        read: true,
        update: true,
        delete: true,
        search: true,
    };

    /// v2 letters, which must appear in `cruds` order, each at most once.
    fn parse_v2(letters: &str) -> Option<Self> {
        let mut p = Self::default();
        let mut last = 0usize;
        for c in letters.chars() {
            let rank = match c {
                'c' => 1,
                'r' => 2,
                'u' => 3,
                'd' => 4,
                's' => 5,
                _ => return None,
            };
            if rank <= last {
                return None;
            }
            last = rank;
            match c {
                'c' => p.create = true,
                'r' => p.read = true,
                'u' => p.update = true,
                'd' => p.delete = true,
                _ => p.search = true,
            }
        }
        (last > 0).then_some(p)
    }

    pub fn allows(&self, interaction: Interaction) -> bool {
        match interaction {
            Interaction::Create => self.create,
            Interaction::Read => self.read,
            Interaction::Update => self.update,
            Interaction::Delete => self.delete,
            Interaction::Search => self.search,
        }
    }

    /// Whether every permission of `other` is also in `self`.
    pub fn covers(&self, other: &Self) -> bool {
        (self.create || !other.create)
            && (self.read || !other.read)
            && (self.update || !other.update)
            && (self.delete || !other.delete)
            && (self.search || !other.search)
    }

    fn words(&self) -> String {
        let mut words = Vec::new();
        if self.read {
            words.push("read");
        }
        if self.search {
            words.push("search");
        }
        if self.create {
            words.push("create");
        }
        if self.update {
            words.push("update");
        }
        if self.delete {
            words.push("delete");
        }
        words.join(", ")
    }
}

/// `patient/Observation.rs?category=...` and its v1 forms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceScope {
    pub context: Context,
    /// A resource type or `*`.
    pub resource_type: String,
    pub permissions: Permissions,
    /// v2 granular query (`?category=system|code`): the resources it reaches must match every
    /// parameter.
    pub query: Vec<(String, String)>,
    /// Written in v1 form (`.read`, `.write`, `.*`).
    pub v1: bool,
}

impl ResourceScope {
    fn parse(s: &str) -> Option<Self> {
        let (context, rest) = s.split_once('/')?;
        let context = match context {
            "patient" => Context::Patient,
            "user" => Context::User,
            "system" => Context::System,
            _ => return None,
        };
        let (target, query) = match rest.split_once('?') {
            Some((t, q)) => (t, Some(q)),
            None => (rest, None),
        };
        let (resource_type, permission) = target.rsplit_once('.')?;
        let type_ok = resource_type == "*"
            || (resource_type
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_uppercase())
                && resource_type.chars().all(|c| c.is_ascii_alphanumeric()));
        if !type_ok {
            return None;
        }
        let (permissions, v1) = match permission {
            "read" => (
                Permissions {
                    read: true,
                    search: true,
                    ..Permissions::default()
                },
                true,
            ),
            "write" => (
                Permissions {
                    create: true,
                    update: true,
                    delete: true,
                    ..Permissions::default()
                },
                true,
            ),
            "*" => (Permissions::ALL, true),
            letters => (Permissions::parse_v2(letters)?, false),
        };
        // v1 scopes have no query part.
        if v1 && query.is_some() {
            return None;
        }
        let mut pairs = Vec::new();
        if let Some(q) = query {
            for pair in q.split('&') {
                let (k, v) = pair.split_once('=')?;
                if k.is_empty() || v.is_empty() {
                    return None;
                }
                pairs.push((k.to_owned(), v.to_owned()));
            }
        }
        Some(Self {
            context,
            resource_type: resource_type.to_owned(),
            permissions,
            query: pairs,
            v1,
        })
    }

    pub fn applies_to(&self, resource_type: &str) -> bool {
        self.resource_type == "*" || self.resource_type == resource_type
    }

    /// Whether `self` grants nothing beyond what `wider` grants (used for refresh narrowing).
    pub fn within(&self, wider: &Self) -> bool {
        self.context == wider.context
            && (wider.resource_type == "*" || wider.resource_type == self.resource_type)
            && wider.permissions.covers(&self.permissions)
            && wider.query.iter().all(|p| self.query.contains(p))
    }

    /// Whether the resource (JSON) satisfies this scope's granular query. A parameter this
    /// code cannot evaluate never matches: granting less is the safe side.
    pub fn query_matches(&self, resource: &Value) -> bool {
        self.query
            .iter()
            .all(|(name, value)| parameter_matches(resource, name, value))
    }
}

fn parameter_matches(resource: &Value, name: &str, wanted: &str) -> bool {
    match name {
        "category" | "code" | "type" => {
            let element = &resource[name];
            let concepts: Vec<&Value> = match element {
                Value::Array(items) => items.iter().collect(),
                Value::Object(_) => vec![element],
                _ => return false,
            };
            wanted
                .split(',')
                .any(|token| concepts.iter().any(|c| concept_matches(c, token)))
        }
        "status" | "clinical-status" => {
            let actual = match name {
                "status" => resource["status"].as_str(),
                _ => None,
            };
            match actual {
                Some(actual) => wanted.split(',').any(|w| w.eq_ignore_ascii_case(actual)),
                None => {
                    name == "clinical-status"
                        && wanted
                            .split(',')
                            .any(|w| concept_matches(&resource["clinicalStatus"], w))
                }
            }
        }
        _ => false,
    }
}

fn concept_matches(concept: &Value, token: &str) -> bool {
    let (system, code) = match token.split_once('|') {
        Some((s, c)) => (Some(s), c),
        None => (None, token),
    };
    concept["coding"].as_array().is_some_and(|codings| {
        codings.iter().any(|coding| {
            let code_ok = coding["code"].as_str() == Some(code);
            let system_ok = match system {
                None => true,
                Some("") => coding.get("system").is_none(),
                Some(s) => coding["system"].as_str() == Some(s),
            };
            code_ok && system_ok
        })
    })
}

/// One recognised scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Resource(ResourceScope),
    OpenId,
    FhirUser,
    Profile,
    Launch,
    LaunchPatient,
    LaunchEncounter,
    OfflineAccess,
    OnlineAccess,
}

/// Scopes in the order given, each with its original text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet {
    items: Vec<(String, Scope)>,
}

/// The non-resource scopes this server knows, for discovery and the consent page.
pub const CONTEXT_SCOPES: &[(&str, &str)] = &[
    ("openid", "Confirm who you are to the app (OpenID Connect)"),
    ("fhirUser", "Tell the app which FHIR record describes you"),
    ("profile", "Share your basic profile"),
    ("launch", "Let the app open from the EHR with its context"),
    (
        "launch/patient",
        "Let the app know which patient's record is open",
    ),
    (
        "launch/encounter",
        "Let the app know which encounter is open",
    ),
    (
        "offline_access",
        "Keep access when you are not using the app (until you revoke it)",
    ),
    ("online_access", "Keep access while you are signed in"),
];

impl Scope {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "openid" => Self::OpenId,
            "fhirUser" => Self::FhirUser,
            "profile" => Self::Profile,
            "launch" => Self::Launch,
            "launch/patient" => Self::LaunchPatient,
            "launch/encounter" => Self::LaunchEncounter,
            "offline_access" => Self::OfflineAccess,
            "online_access" => Self::OnlineAccess,
            other => Self::Resource(ResourceScope::parse(other)?),
        })
    }
}

/// What a set of scopes allows for one type and interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Deny,
    /// Allowed. `patient_only`: every scope that allows it is a `patient/` scope, so the
    /// request must stay in the patient's compartment. `filters`: when only granular scopes
    /// allow it, a resource is in scope if it matches at least one of these queries.
    Allow {
        patient_only: bool,
        filters: Option<Vec<Vec<(String, String)>>>,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow { .. })
    }
}

impl ScopeSet {
    /// Parses a space-separated scope string, dropping unknown and repeated scopes.
    pub fn parse(s: &str) -> Self {
        let mut items: Vec<(String, Scope)> = Vec::new();
        for word in s.split_ascii_whitespace() {
            if items.iter().any(|(t, _)| t == word) {
                continue;
            }
            if let Some(scope) = Scope::parse(word) {
                items.push((word.to_owned(), scope));
            }
        }
        Self { items }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Scope)> {
        self.items.iter().map(|(t, s)| (t.as_str(), s))
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn contains(&self, scope: &Scope) -> bool {
        self.items.iter().any(|(_, s)| s == scope)
    }

    pub fn contains_text(&self, text: &str) -> bool {
        self.items.iter().any(|(t, _)| t == text)
    }

    pub fn resource_scopes(&self) -> impl Iterator<Item = &ResourceScope> {
        self.items.iter().filter_map(|(_, s)| match s {
            Scope::Resource(r) => Some(r),
            _ => None,
        })
    }

    /// Keeps the scopes for which `keep` answers true.
    pub fn retain(&self, mut keep: impl FnMut(&str, &Scope) -> bool) -> Self {
        Self {
            items: self
                .items
                .iter()
                .filter(|(t, s)| keep(t, s))
                .cloned()
                .collect(),
        }
    }

    /// The scopes of `self` that `wider` covers: a scope asked for at refresh or at consent
    /// must be within what was granted or requested.
    pub fn narrowed_to(&self, wider: &Self) -> Self {
        self.retain(|text, scope| match scope {
            Scope::Resource(r) => wider.resource_scopes().any(|w| r.within(w)),
            _ => wider.contains_text(text),
        })
    }

    /// What these scopes allow for `interaction` on `resource_type`.
    pub fn decide(&self, resource_type: &str, interaction: Interaction) -> Decision {
        let matching: Vec<&ResourceScope> = self
            .resource_scopes()
            .filter(|r| r.applies_to(resource_type) && r.permissions.allows(interaction))
            .collect();
        if matching.is_empty() {
            return Decision::Deny;
        }
        let patient_only = matching.iter().all(|r| r.context == Context::Patient);
        let filters = if matching.iter().any(|r| r.query.is_empty()) {
            None
        } else {
            Some(matching.iter().map(|r| r.query.clone()).collect())
        };
        Decision::Allow {
            patient_only,
            filters,
        }
    }

    /// Whether a resource may be returned for `interaction` (granular filters applied).
    pub fn permits(&self, resource: &Value, interaction: Interaction) -> bool {
        let Some(resource_type) = resource["resourceType"].as_str() else {
            return false;
        };
        self.resource_scopes().any(|r| {
            r.applies_to(resource_type)
                && r.permissions.allows(interaction)
                && r.query_matches(resource)
        })
    }

    /// Plain words for the consent page.
    pub fn describe(text: &str) -> String {
        if let Some((_, words)) = CONTEXT_SCOPES.iter().find(|(s, _)| *s == text) {
            return (*words).to_owned();
        }
        match ResourceScope::parse(text) {
            Some(r) => {
                let whose = match r.context {
                    Context::Patient => "your",
                    Context::User => "the records you can see:",
                    Context::System => "all",
                };
                let what = if r.resource_type == "*" {
                    "all health records".to_owned()
                } else {
                    split_camel(&r.resource_type)
                };
                let mut s = format!("{} {whose} {what}", capitalize(&r.permissions.words()));
                for (k, v) in &r.query {
                    let shown = v.rsplit('|').next().unwrap_or(v);
                    s.push_str(&format!(" ({k}: {shown})"));
                }
                s
            }
            None => text.to_owned(),
        }
    }
}

impl std::fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (t, _)) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(t)?;
        }
        Ok(())
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn split_camel(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// US Core categories a user may grant instead of a whole type (HTI-1 granular scopes).
pub const GRANULAR_CATEGORIES: &[(&str, &str, &[&str])] = &[
    (
        "Condition",
        "http://hl7.org/fhir/us/core/CodeSystem/condition-category",
        &["problem-list-item", "health-concern"],
    ),
    (
        "Condition",
        "http://terminology.hl7.org/CodeSystem/condition-category",
        &["encounter-diagnosis"],
    ),
    (
        "Observation",
        "http://terminology.hl7.org/CodeSystem/observation-category",
        &["laboratory", "social-history", "survey", "vital-signs"],
    ),
    (
        "Observation",
        "http://hl7.org/fhir/us/core/CodeSystem/us-core-category",
        &["sdoh"],
    ),
    (
        "Observation",
        "http://hl7.org/fhir/us/core/CodeSystem/us-core-category",
        &["clinical-test"],
    ),
];

/// The category-limited scopes offered for a type scope (`patient/Observation.rs` ->
/// `patient/Observation.rs?category=...|laboratory`, ...).
pub fn granular_choices(scope: &ResourceScope) -> Vec<String> {
    if !scope.query.is_empty() || scope.v1 {
        return Vec::new();
    }
    let mut letters = String::new();
    for (on, c) in [
        (scope.permissions.create, 'c'),
        (scope.permissions.read, 'r'),
        (scope.permissions.update, 'u'),
        (scope.permissions.delete, 'd'),
        (scope.permissions.search, 's'),
    ] {
        if on {
            letters.push(c);
        }
    }
    GRANULAR_CATEGORIES
        .iter()
        .filter(|(t, _, _)| *t == scope.resource_type)
        .flat_map(|(t, system, codes)| {
            let letters = letters.clone();
            codes.iter().map(move |code| {
                format!(
                    "{}/{t}.{letters}?category={system}|{code}",
                    scope.context.as_str()
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn v1_and_v2_scopes_parse_to_the_same_permissions() {
        let v1 = ScopeSet::parse("patient/Patient.read");
        let v2 = ScopeSet::parse("patient/Patient.rs");
        assert_eq!(
            v1.resource_scopes().next().unwrap().permissions,
            v2.resource_scopes().next().unwrap().permissions
        );
        let all = ScopeSet::parse("user/*.*");
        assert_eq!(
            all.resource_scopes().next().unwrap().permissions,
            Permissions::ALL
        );
    }

    #[test]
    fn unknown_and_malformed_scopes_are_dropped() {
        let s = ScopeSet::parse(
            "openid bogus patient/Patient.sr patient/obs.rs patient/Patient.rs?x patient/Patient.read?category=a launch/patient",
        );
        assert_eq!(s.to_string(), "openid launch/patient");
    }

    #[test]
    fn decisions_follow_type_interaction_and_context() {
        let s = ScopeSet::parse("patient/Observation.rs user/Patient.r");
        assert!(s.decide("Observation", Interaction::Search).is_allowed());
        assert!(!s.decide("Observation", Interaction::Create).is_allowed());
        assert!(!s.decide("Condition", Interaction::Read).is_allowed());
        assert_eq!(
            s.decide("Observation", Interaction::Read),
            Decision::Allow {
                patient_only: true,
                filters: None
            }
        );
        assert_eq!(
            s.decide("Patient", Interaction::Read),
            Decision::Allow {
                patient_only: false,
                filters: None
            }
        );
        assert!(!s.decide("Patient", Interaction::Search).is_allowed());
    }

    #[test]
    fn granular_scopes_filter_resources_by_category() {
        let lab = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
        let s = ScopeSet::parse(lab);
        let lab_obs = json!({"resourceType": "Observation", "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]});
        let vital = json!({"resourceType": "Observation", "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}]});
        assert!(s.permits(&lab_obs, Interaction::Read));
        assert!(!s.permits(&vital, Interaction::Read));
        match s.decide("Observation", Interaction::Search) {
            Decision::Allow {
                filters: Some(f), ..
            } => assert_eq!(f.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refresh_may_only_narrow() {
        let granted = ScopeSet::parse("openid patient/Observation.rs patient/Patient.read");
        let asked = ScopeSet::parse(
            "openid patient/Observation.r patient/Condition.rs patient/Patient.rs offline_access",
        );
        assert_eq!(
            asked.narrowed_to(&granted).to_string(),
            "openid patient/Observation.r patient/Patient.rs"
        );
    }

    #[test]
    fn granular_choices_name_us_core_categories() {
        let s = ScopeSet::parse("patient/Condition.rs");
        let choices = granular_choices(s.resource_scopes().next().unwrap());
        assert_eq!(choices.len(), 3);
        assert!(choices
            .iter()
            .all(|c| ScopeSet::parse(c).resource_scopes().count() == 1));
    }
}
