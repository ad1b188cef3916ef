//! FHIR R4 search requests, parsed: the search parameters (with modifiers, prefixes, OR lists
//! and AND repetitions, chains and reverse chains) and the result parameters (`_include`,
//! `_revinclude`, `_sort`, `_count`, `_total`, `_summary`, `_elements`).
//!
//! Pure: the query string's name/value pairs in, a [`SearchQuery`] (or a [`QueryError`] that
//! becomes a 400 OperationOutcome) out. Which parameters exist, their types and targets come
//! from the generated search-parameter table ([`super::search_parameters`]), never from a hand
//! list. Execution lives in the search index.

use super::definitions::definitions;
use super::search_parameters::{search_parameter, search_parameters, SearchParamDef};
use super::search_parameters::{SearchParamComponent, SearchParamType};
use super::search_value::{self, DateRange, NumberRange, RefTarget};

/// The default and the largest page size.
pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 1000;
/// How deep chains and `_has` may nest (each level is a sub-search).
const MAX_CHAIN_DEPTH: usize = 4;

/// A request that cannot be answered as asked: 400 with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, QueryError> {
    Err(QueryError(message.into()))
}

/// How the parser treats parameters it does not know.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// `Prefer: handling=strict`: an unknown or unsupported parameter is an error.
    pub strict: bool,
    /// This server's FHIR base URL (no trailing slash), so absolute references to it match.
    pub base_url: String,
}

/// Comparison prefixes of date, number and quantity values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// Search modifiers (`name:modifier=value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modifier {
    None,
    Missing(bool),
    Exact,
    Contains,
    Text,
    Not,
    Above,
    Below,
    Identifier,
    OfType,
    /// `subject:Patient=...`: a reference restricted to one target type.
    Type(String),
}

/// What a reference value names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefQuery {
    /// `123` (any allowed target type) or `Patient/123`.
    Local {
        resource_type: Option<String>,
        id: String,
    },
    /// An absolute URL that is not on this server.
    Url(String),
}

/// One value of a parameter, typed by the parameter's type.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchValue {
    /// Folded for prefix/contains matching, and as given for `:exact`.
    String {
        folded: String,
        raw: String,
    },
    /// `system` None: any system; Some(""): no system (`|code`). `code` None: `system|`.
    Token {
        system: Option<String>,
        code: Option<String>,
    },
    /// `:of-type` value `system|code|value`.
    OfType {
        system: String,
        code: String,
        value: String,
    },
    Reference(RefQuery),
    /// `:identifier` on a reference.
    Identifier {
        system: Option<String>,
        value: Option<String>,
    },
    Date {
        prefix: Prefix,
        range: DateRange,
    },
    Number {
        prefix: Prefix,
        number: NumberRange,
    },
    Quantity {
        prefix: Prefix,
        number: NumberRange,
        system: Option<String>,
        code: Option<String>,
    },
    Uri(String),
    /// One value per component, in the definition's order.
    Composite(Vec<SearchValue>),
    /// `:missing` carries no value of its own.
    Missing,
}

/// One search parameter of the request: its values are OR-ed; clauses are AND-ed.
#[derive(Debug, Clone)]
pub enum Clause {
    Param {
        def: &'static SearchParamDef,
        modifier: Modifier,
        values: Vec<SearchValue>,
    },
    /// `subject:Patient.name=x`: resources whose `param` points at a `target_types` resource
    /// matching `inner`.
    Chain {
        param: &'static SearchParamDef,
        target_types: Vec<String>,
        inner: Box<Clause>,
    },
    /// `_has:Observation:patient:code=x`: resources that a `source_type` resource matching
    /// `inner` points at through `param`.
    Has {
        source_type: String,
        param: &'static SearchParamDef,
        inner: Box<Clause>,
    },
}

/// `_include` / `_revinclude`: `Source:param[:Target]`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludeSpec {
    /// The type holding the reference; `*` for every type.
    pub source_type: String,
    /// The reference parameter; None for `*` (every reference parameter).
    pub param: Option<String>,
    pub target_type: Option<String>,
    pub iterate: bool,
}

#[derive(Debug, Clone)]
pub struct SortSpec {
    pub def: &'static SearchParamDef,
    pub descending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TotalMode {
    None,
    Estimate,
    #[default]
    Accurate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryMode {
    True,
    Text,
    Data,
    Count,
    False,
}

impl SummaryMode {
    /// `_summary`'s value; `None` for anything FHIR does not define.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "true" => SummaryMode::True,
            "text" => SummaryMode::Text,
            "data" => SummaryMode::Data,
            "count" => SummaryMode::Count,
            "false" => SummaryMode::False,
            _ => return None,
        })
    }
}

/// `_elements`' value: the element names, trimmed, without empty ones.
pub fn parse_elements(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
}

/// The part of `resource` (of `resource_type`) that `_summary` / `_elements` ask for, tagged
/// `SUBSETTED` as FHIR requires; `None` when they ask for the whole resource. `resourceType`,
/// `id` and `meta` always stay; `_elements` names top-level elements and wins over `_summary`.
pub fn subset(
    resource_type: &str,
    resource: serde_json::Map<String, serde_json::Value>,
    summary: Option<SummaryMode>,
    elements: &[String],
) -> Option<serde_json::Map<String, serde_json::Value>> {
    use serde_json::Value;
    let summary =
        summary.filter(|m| matches!(m, SummaryMode::True | SummaryMode::Text | SummaryMode::Data));
    if elements.is_empty() && summary.is_none() {
        return None;
    }
    let keep = |k: &str| -> bool {
        if matches!(k, "resourceType" | "id" | "meta") {
            return true;
        }
        if !elements.is_empty() {
            return elements.iter().any(|e| e == k);
        }
        match summary {
            Some(SummaryMode::Text) => k == "text",
            Some(SummaryMode::Data) => k != "text",
            _ => true,
        }
    };
    let mut reduced: serde_json::Map<String, Value> =
        resource.into_iter().filter(|(k, _)| keep(k)).collect();
    if elements.is_empty() && summary == Some(SummaryMode::True) {
        super::definitions::retain_summary(resource_type, &mut reduced);
    }
    let meta = reduced
        .entry("meta")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if let Value::Object(m) = meta {
        let tags = m.entry("tag").or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(t) = tags {
            t.push(serde_json::json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}));
        }
    }
    Some(reduced)
}

/// A parameter the server did not use, and why (reported in an OperationOutcome).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub name: String,
    pub reason: String,
}

/// A parsed search request.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub resource_type: String,
    pub clauses: Vec<Clause>,
    pub includes: Vec<IncludeSpec>,
    pub revincludes: Vec<IncludeSpec>,
    pub sort: Vec<SortSpec>,
    pub count: usize,
    pub total: TotalMode,
    pub summary: Option<SummaryMode>,
    pub elements: Vec<String>,
    pub ignored: Vec<Ignored>,
    /// The opaque paging cursor this server put in a `next`/`previous` link.
    pub cursor: Option<String>,
}

impl SearchQuery {
    fn new(resource_type: &str) -> Self {
        Self {
            resource_type: resource_type.to_owned(),
            clauses: Vec::new(),
            includes: Vec::new(),
            revincludes: Vec::new(),
            sort: Vec::new(),
            count: DEFAULT_COUNT,
            total: TotalMode::default(),
            summary: None,
            elements: Vec::new(),
            ignored: Vec::new(),
            cursor: None,
        }
    }
}

/// Result and control parameters that are not search parameters; `_format` and `_pretty` are
/// handled by the HTTP layer and need no report.
const QUIET: &[&str] = &["_format", "_pretty"];

/// Parses the name/value pairs (already percent-decoded) of a search on `resource_type`.
pub fn parse(
    resource_type: &str,
    pairs: &[(String, String)],
    options: &ParseOptions,
) -> Result<SearchQuery, QueryError> {
    if search_parameters(resource_type).is_empty() {
        return err(format!("{resource_type} is not a searchable resource type"));
    }
    let mut q = SearchQuery::new(resource_type);
    for (name, value) in pairs {
        let ignore = |q: &mut SearchQuery, reason: String| -> Result<(), QueryError> {
            if options.strict {
                return err(format!("parameter {name}: {reason}"));
            }
            q.ignored.push(Ignored {
                name: name.clone(),
                reason,
            });
            Ok(())
        };
        match name.as_str() {
            n if QUIET.contains(&n) => {}
            "_count" => {
                let n: usize = value
                    .trim()
                    .parse()
                    .map_err(|_| QueryError(format!("_count={value:?} is not a number")))?;
                q.count = n.min(MAX_COUNT);
            }
            "_cursor" => q.cursor = Some(value.clone()),
            "_total" => {
                q.total = match value.as_str() {
                    "none" => TotalMode::None,
                    "estimate" => TotalMode::Estimate,
                    "accurate" => TotalMode::Accurate,
                    _ => return err(format!("_total={value:?}: use none, estimate or accurate")),
                }
            }
            "_summary" => match SummaryMode::parse(value) {
                Some(mode) => q.summary = Some(mode),
                None => {
                    return err(format!(
                        "_summary={value:?}: use true, text, data, count or false"
                    ))
                }
            },
            "_elements" => q.elements.extend(parse_elements(value)),
            "_sort" => {
                for key in value.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                    let (code, descending) = match key.strip_prefix('-') {
                        Some(c) => (c, true),
                        None => (key, false),
                    };
                    match search_parameter(resource_type, code) {
                        Some(def) if def.path.is_some() => {
                            q.sort.push(SortSpec { def, descending })
                        }
                        _ => ignore(&mut q, format!("cannot sort by {code:?}"))?,
                    }
                }
            }
            "_include" | "_include:iterate" | "_revinclude" | "_revinclude:iterate" => {
                let rev = name.starts_with("_revinclude");
                let iterate = name.ends_with(":iterate");
                match parse_include(value, iterate) {
                    Ok(spec) if rev => q.revincludes.push(spec),
                    Ok(spec) => q.includes.push(spec),
                    Err(e) => ignore(&mut q, e.0)?,
                }
            }
            _ => match parse_clause(resource_type, name, value, options, 0) {
                Ok(Some(clause)) => q.clauses.push(clause),
                Ok(None) => {}
                Err(ClauseError::Unknown(reason)) => ignore(&mut q, reason)?,
                Err(ClauseError::Bad(e)) => return Err(e),
            },
        }
    }
    Ok(q)
}

fn parse_include(value: &str, iterate: bool) -> Result<IncludeSpec, QueryError> {
    if value == "*" {
        return Ok(IncludeSpec {
            source_type: "*".into(),
            param: None,
            target_type: None,
            iterate,
        });
    }
    let mut parts = value.split(':');
    let source = parts.next().unwrap_or_default();
    let param = parts.next();
    let target = parts.next();
    if parts.next().is_some() {
        return err(format!("{value:?} is not Type:param[:Target]"));
    }
    if search_parameters(source).is_empty() {
        return err(format!("unknown resource type {source:?}"));
    }
    let param = match param {
        None | Some("*") => None,
        Some(p) => match search_parameter(source, p) {
            Some(def) if def.param_type == SearchParamType::Reference => Some(p.to_owned()),
            _ => return err(format!("{source}:{p} is not a reference search parameter")),
        },
    };
    if let Some(t) = target {
        if search_parameters(t).is_empty() {
            return err(format!("unknown target type {t:?}"));
        }
    }
    Ok(IncludeSpec {
        source_type: source.to_owned(),
        param,
        target_type: target.map(str::to_owned),
        iterate,
    })
}

enum ClauseError {
    /// A parameter this server does not know or support: ignored unless strict.
    Unknown(String),
    /// A known parameter with a bad value or modifier: always 400.
    Bad(QueryError),
}

impl From<QueryError> for ClauseError {
    fn from(e: QueryError) -> Self {
        ClauseError::Bad(e)
    }
}

/// Parses one `name=value` into a clause; `Ok(None)` for nothing to filter on.
fn parse_clause(
    resource_type: &str,
    name: &str,
    value: &str,
    options: &ParseOptions,
    depth: usize,
) -> Result<Option<Clause>, ClauseError> {
    if depth > MAX_CHAIN_DEPTH {
        return Err(ClauseError::Bad(QueryError(format!(
            "{name}: chains nest at most {MAX_CHAIN_DEPTH} levels"
        ))));
    }
    if let Some(rest) = name.strip_prefix("_has:") {
        let mut parts = rest.splitn(3, ':');
        let (Some(source), Some(param), Some(inner)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(ClauseError::Bad(QueryError(format!(
                "{name}: use _has:Type:reference:parameter"
            ))));
        };
        let def = match search_parameter(source, param) {
            Some(d) if d.param_type == SearchParamType::Reference => d,
            _ => {
                return Err(ClauseError::Unknown(format!(
                    "{source}:{param} is not a reference search parameter"
                )))
            }
        };
        if !def.targets.is_empty() && !def.targets.iter().any(|t| t == resource_type) {
            return Err(ClauseError::Bad(QueryError(format!(
                "{source}.{param} cannot point at {resource_type}"
            ))));
        }
        let Some(inner) = parse_clause(source, inner, value, options, depth + 1)? else {
            return Ok(None);
        };
        return Ok(Some(Clause::Has {
            source_type: source.to_owned(),
            param: def,
            inner: Box::new(inner),
        }));
    }
    // A chain: `param[:Type].rest`.
    if let Some((head, rest)) = name.split_once('.') {
        let (code, modifier) = split_modifier(head);
        let def = match search_parameter(resource_type, code) {
            Some(d) if d.param_type == SearchParamType::Reference => d,
            Some(_) => {
                return Err(ClauseError::Bad(QueryError(format!(
                    "{code} is not a reference parameter and cannot be chained"
                ))))
            }
            None => {
                return Err(ClauseError::Unknown(format!(
                    "unknown search parameter {code:?} for {resource_type}"
                )))
            }
        };
        let (rest_code, _) = split_modifier(rest.split('.').next().unwrap_or(rest));
        let target_types: Vec<String> = match modifier {
            Some(t) => {
                if !def.targets.iter().any(|x| x == t) {
                    return Err(ClauseError::Bad(QueryError(format!(
                        "{code} cannot point at {t}"
                    ))));
                }
                vec![t.to_owned()]
            }
            None => def
                .targets
                .iter()
                .filter(|t| search_parameter(t, rest_code).is_some())
                .cloned()
                .collect(),
        };
        if target_types.is_empty() {
            return Err(ClauseError::Unknown(format!(
                "no target of {code} has a search parameter {rest_code:?}"
            )));
        }
        // Parse against the first target; the value must parse for each of them alike.
        let mut inner = None;
        for t in &target_types {
            inner = parse_clause(t, rest, value, options, depth + 1)?;
        }
        let Some(inner) = inner else {
            return Ok(None);
        };
        return Ok(Some(Clause::Chain {
            param: def,
            target_types,
            inner: Box::new(inner),
        }));
    }
    let (code, modifier) = split_modifier(name);
    let Some(def) = search_parameter(resource_type, code) else {
        return Err(ClauseError::Unknown(format!(
            "unknown search parameter {code:?} for {resource_type}"
        )));
    };
    if matches!(code, "_text" | "_content") && modifier.is_none() {
        // Words, matched by the index (no FHIRPath: the narrative, every string).
        let values: Vec<SearchValue> = split_unescaped(value, ',')
            .iter()
            .map(|item| unescape(item))
            // A value without a letter or digit has no words to match: it filters nothing.
            .filter(|raw| raw.chars().any(char::is_alphanumeric))
            .map(|raw| SearchValue::String {
                folded: search_value::normalize(&raw),
                raw,
            })
            .collect();
        return Ok((!values.is_empty()).then_some(Clause::Param {
            def,
            modifier: Modifier::None,
            values,
        }));
    }
    if def.path.is_none() {
        return Err(ClauseError::Unknown(format!(
            "search parameter {code:?} is not supported"
        )));
    }
    if def.param_type == SearchParamType::Token {
        if let Some(m @ ("in" | "not-in")) = modifier {
            return in_value_set(def, m == "not-in", value).map(Some);
        }
    }
    let modifier = parse_modifier(def, modifier)?;
    if let Modifier::Missing(_) = modifier {
        let missing = match value.trim() {
            "true" => true,
            "false" => false,
            other => {
                return Err(ClauseError::Bad(QueryError(format!(
                    "{name}={other:?}: :missing takes true or false"
                ))))
            }
        };
        return Ok(Some(Clause::Param {
            def,
            modifier: Modifier::Missing(missing),
            values: vec![SearchValue::Missing],
        }));
    }
    let mut values = Vec::new();
    for item in split_unescaped(value, ',') {
        if item.is_empty() {
            continue;
        }
        values.push(parse_value(def, &modifier, &item, options)?);
    }
    if values.is_empty() {
        // An empty value filters nothing (FHIR: the parameter is ignored).
        return Ok(None);
    }
    Ok(Some(Clause::Param {
        def,
        modifier,
        values,
    }))
}

/// `code:in=ValueSet-url` (`:not-in`): the codes of the value set(s) as an OR of tokens (their
/// negation). Only value sets this server can enumerate (the FHIR R4 value sets it validates
/// required bindings against) are known; any other is a 400, never an empty match.
fn in_value_set(
    def: &'static SearchParamDef,
    negate: bool,
    value: &str,
) -> Result<Clause, ClauseError> {
    let mut values = Vec::new();
    for url in split_unescaped(value, ',') {
        let url = unescape(&url);
        let Some(set) = definitions().value_set(&url) else {
            let shown: String = url.chars().take(200).collect();
            return Err(ClauseError::Bad(QueryError(format!(
                "{}:{}: value set {shown:?} is not known to this server",
                def.code,
                if negate { "not-in" } else { "in" }
            ))));
        };
        for (system, code) in set.pairs() {
            values.push(SearchValue::Token {
                system: Some(system.to_owned()),
                code: Some(code.to_owned()),
            });
            // A `code`-typed element (Observation.status) carries no system: `|code`.
            let bare = SearchValue::Token {
                system: Some(String::new()),
                code: Some(code.to_owned()),
            };
            if !values.contains(&bare) {
                values.push(bare);
            }
        }
    }
    if values.is_empty() {
        return Err(ClauseError::Bad(QueryError(format!(
            "{}:in needs a value set URL",
            def.code
        ))));
    }
    Ok(Clause::Param {
        def,
        modifier: if negate {
            Modifier::Not
        } else {
            Modifier::None
        },
        values,
    })
}

fn split_modifier(name: &str) -> (&str, Option<&str>) {
    match name.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (name, None),
    }
}

fn parse_modifier(def: &SearchParamDef, modifier: Option<&str>) -> Result<Modifier, ClauseError> {
    use SearchParamType as T;
    let Some(m) = modifier else {
        return Ok(Modifier::None);
    };
    let bad = || {
        ClauseError::Bad(QueryError(format!(
            "modifier :{m} is not allowed on {} ({:?})",
            def.code, def.param_type
        )))
    };
    Ok(match (m, def.param_type) {
        ("missing", _) => Modifier::Missing(false), // value decides; see parse_missing
        ("exact", T::String) => Modifier::Exact,
        ("contains", T::String) => Modifier::Contains,
        ("text", T::String | T::Token) => Modifier::Text,
        ("not", T::Token) => Modifier::Not,
        ("of-type", T::Token) => Modifier::OfType,
        ("above", T::Uri) => Modifier::Above,
        ("below", T::Uri) => Modifier::Below,
        ("identifier", T::Reference) => Modifier::Identifier,
        ("above" | "below", T::Token) => {
            return Err(ClauseError::Unknown(format!(
                "modifier :{m} (subsumption) is not supported"
            )))
        }
        (t, T::Reference) if def.targets.iter().any(|x| x == t) => Modifier::Type(t.to_owned()),
        _ => return Err(bad()),
    })
}

/// Splits at unescaped `sep` and removes the escapes (`\,` `\$` `\|` `\\`).
fn split_unescaped(text: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n) if n == sep => current.push(n),
                Some(n) => {
                    // Keep other escapes for the next split level.
                    current.push('\\');
                    current.push(n);
                }
                None => current.push('\\'),
            }
        } else if c == sep {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_prefix(text: &str) -> (Prefix, &str) {
    let prefix = match text.get(..2) {
        Some("eq") => Prefix::Eq,
        Some("ne") => Prefix::Ne,
        Some("gt") => Prefix::Gt,
        Some("lt") => Prefix::Lt,
        Some("ge") => Prefix::Ge,
        Some("le") => Prefix::Le,
        Some("sa") => Prefix::Sa,
        Some("eb") => Prefix::Eb,
        Some("ap") => Prefix::Ap,
        _ => return (Prefix::Eq, text),
    };
    (prefix, &text[2..])
}

fn parse_value(
    def: &SearchParamDef,
    modifier: &Modifier,
    item: &str,
    options: &ParseOptions,
) -> Result<SearchValue, QueryError> {
    if def.param_type == SearchParamType::Composite {
        let parts = split_unescaped(item, '$');
        if parts.len() != def.components.len() {
            return err(format!(
                "{}={item:?}: a composite value has {} parts separated by $",
                def.code,
                def.components.len()
            ));
        }
        let mut values = Vec::new();
        for (part, component) in parts.iter().zip(&def.components) {
            values.push(parse_component(def, component, part, options)?);
        }
        return Ok(SearchValue::Composite(values));
    }
    parse_typed(&def.code, def.param_type, modifier, item, options)
}

fn parse_component(
    def: &SearchParamDef,
    component: &SearchParamComponent,
    part: &str,
    options: &ParseOptions,
) -> Result<SearchValue, QueryError> {
    let Some(t) = component.param_type else {
        return err(format!("{}: a component has no known type", def.code));
    };
    parse_typed(&def.code, t, &Modifier::None, part, options)
}

fn parse_typed(
    code: &str,
    param_type: SearchParamType,
    modifier: &Modifier,
    item: &str,
    options: &ParseOptions,
) -> Result<SearchValue, QueryError> {
    use SearchParamType as T;
    match param_type {
        T::String => {
            let raw = unescape(item);
            Ok(SearchValue::String {
                folded: search_value::normalize(&raw),
                raw,
            })
        }
        T::Token if *modifier == Modifier::OfType => {
            let parts: Vec<String> = split_unescaped(item, '|')
                .iter()
                .map(|p| unescape(p))
                .collect();
            match parts.as_slice() {
                [system, code, value] => Ok(SearchValue::OfType {
                    system: system.clone(),
                    code: code.clone(),
                    value: value.clone(),
                }),
                _ => err(format!("{code}:of-type needs system|code|value")),
            }
        }
        T::Token if *modifier == Modifier::Text => {
            let raw = unescape(item);
            Ok(SearchValue::String {
                folded: search_value::normalize(&raw),
                raw,
            })
        }
        T::Token => {
            let (system, token_code) = split_token(item);
            if system.is_none() && token_code.is_none() {
                return err(format!("{code}: empty token"));
            }
            Ok(SearchValue::Token {
                system,
                code: token_code,
            })
        }
        T::Reference if *modifier == Modifier::Identifier => {
            let (system, value) = split_token(item);
            Ok(SearchValue::Identifier {
                system: system.filter(|s| !s.is_empty()),
                value,
            })
        }
        T::Reference => {
            let text = unescape(item);
            let restricted = match modifier {
                Modifier::Type(t) => Some(t.clone()),
                _ => None,
            };
            let reference = match search_value::parse_reference(&text, &options.base_url) {
                Some(RefTarget::Local { resource_type, id }) => {
                    if restricted.as_ref().is_some_and(|t| *t != resource_type) {
                        return err(format!("{code}: {text} is not a {restricted:?}"));
                    }
                    RefQuery::Local {
                        resource_type: Some(resource_type),
                        id,
                    }
                }
                Some(RefTarget::Url(url)) if url.contains('/') || url.contains(':') => {
                    RefQuery::Url(url)
                }
                Some(RefTarget::Url(id)) => RefQuery::Local {
                    resource_type: restricted,
                    id,
                },
                None => return err(format!("{code}: {text:?} is not a reference")),
            };
            Ok(SearchValue::Reference(reference))
        }
        T::Date => {
            let (prefix, rest) = parse_prefix(item);
            let range = search_value::parse_date(rest)
                .ok_or_else(|| QueryError(format!("{code}={item:?} is not a date")))?;
            Ok(SearchValue::Date { prefix, range })
        }
        T::Number => {
            let (prefix, rest) = parse_prefix(item);
            let number = search_value::parse_number(rest)
                .ok_or_else(|| QueryError(format!("{code}={item:?} is not a number")))?;
            Ok(SearchValue::Number { prefix, number })
        }
        T::Quantity => {
            let (prefix, rest) = parse_prefix(item);
            let parts: Vec<String> = split_unescaped(rest, '|')
                .iter()
                .map(|p| unescape(p))
                .collect();
            let (number, system, unit) = match parts.as_slice() {
                [n] => (n, None, None),
                [n, s, c] => (
                    n,
                    Some(s.clone()).filter(|s| !s.is_empty()),
                    Some(c.clone()).filter(|c| !c.is_empty()),
                ),
                _ => return err(format!("{code}={item:?}: use [prefix]number[|system|code]")),
            };
            let number = search_value::parse_number(number)
                .ok_or_else(|| QueryError(format!("{code}={item:?} is not a quantity")))?;
            Ok(SearchValue::Quantity {
                prefix,
                number,
                system,
                code: unit,
            })
        }
        T::Uri => Ok(SearchValue::Uri(unescape(item))),
        T::Composite | T::Special => err(format!("{code}: values of this type are not supported")),
    }
}

/// `system|code` -> (Some(system), Some(code)); `|code` -> (Some(""), code); `system|` ->
/// (system, None); `code` -> (None, code).
fn split_token(item: &str) -> (Option<String>, Option<String>) {
    let parts = split_unescaped(item, '|');
    match parts.as_slice() {
        [code] => (None, Some(unescape(code)).filter(|c| !c.is_empty())),
        [system, code] => (
            Some(unescape(system)),
            Some(unescape(code)).filter(|c| !c.is_empty()),
        ),
        // A `|` inside a code that was not escaped: keep everything after the first as the code.
        [system, rest @ ..] => (Some(unescape(system)), Some(unescape(&rest.join("|")))),
        [] => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    fn parse_ok(t: &str, q: &str) -> SearchQuery {
        parse(t, &pairs(q), &ParseOptions::default()).expect("parses")
    }

    #[test]
    fn tokens_split_system_and_code() {
        let q = parse_ok(
            "Observation",
            "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory,|x,sys|",
        );
        let Clause::Param { values, .. } = &q.clauses[0] else {
            panic!()
        };
        assert_eq!(
            values[0],
            SearchValue::Token {
                system: Some("http://terminology.hl7.org/CodeSystem/observation-category".into()),
                code: Some("laboratory".into())
            }
        );
        assert_eq!(
            values[1],
            SearchValue::Token {
                system: Some(String::new()),
                code: Some("x".into())
            }
        );
        assert_eq!(
            values[2],
            SearchValue::Token {
                system: Some("sys".into()),
                code: None
            }
        );
    }

    #[test]
    fn references_accept_id_type_and_absolute_url() {
        let opts = ParseOptions {
            strict: false,
            base_url: "https://x.example/fhir/r4".into(),
        };
        for v in [
            "123",
            "Patient/123",
            "https://x.example/fhir/r4/Patient/123",
        ] {
            let q = parse("Observation", &pairs(&format!("patient={v}")), &opts).unwrap();
            let Clause::Param { values, .. } = &q.clauses[0] else {
                panic!()
            };
            let SearchValue::Reference(RefQuery::Local { id, .. }) = &values[0] else {
                panic!("{v}: {values:?}")
            };
            assert_eq!(id, "123");
        }
    }

    #[test]
    fn bad_dates_are_errors_and_unknown_parameters_are_reported() {
        assert!(parse(
            "Observation",
            &pairs("date=notadate"),
            &ParseOptions::default()
        )
        .is_err());
        let q = parse_ok("Observation", "foo=bar&date=ge2024-01");
        assert_eq!(q.ignored.len(), 1);
        let strict = ParseOptions {
            strict: true,
            ..ParseOptions::default()
        };
        assert!(parse("Observation", &pairs("foo=bar"), &strict).is_err());
    }

    #[test]
    fn chains_and_reverse_chains_nest() {
        let q = parse_ok(
            "Observation",
            "subject:Patient.name=peter&patient.organization.name=x",
        );
        assert!(
            matches!(&q.clauses[0], Clause::Chain { target_types, .. } if target_types == &["Patient"])
        );
        assert!(
            matches!(&q.clauses[1], Clause::Chain { inner, .. } if matches!(**inner, Clause::Chain { .. }))
        );
        let q = parse_ok("Patient", "_has:Observation:patient:code=1234");
        assert!(
            matches!(&q.clauses[0], Clause::Has { source_type, .. } if source_type == "Observation")
        );
    }

    #[test]
    fn result_parameters() {
        let q = parse_ok(
            "MedicationRequest",
            "_include=MedicationRequest:medication&_revinclude=Provenance:target&_sort=-authoredon,_id&_count=5000&_total=none&_summary=count",
        );
        assert_eq!(q.includes[0].param.as_deref(), Some("medication"));
        assert_eq!(q.revincludes[0].source_type, "Provenance");
        assert_eq!(q.sort.len(), 2);
        assert!(q.sort[0].descending);
        assert_eq!(q.count, MAX_COUNT);
        assert_eq!(q.total, TotalMode::None);
        assert_eq!(q.summary, Some(SummaryMode::Count));
    }

    #[test]
    fn composite_and_quantity_values() {
        let q = parse_ok(
            "Observation",
            "code-value-quantity=http://loinc.org|8480-6$gt100|http://unitsofmeasure.org|mm[Hg]",
        );
        let Clause::Param { values, .. } = &q.clauses[0] else {
            panic!()
        };
        let SearchValue::Composite(parts) = &values[0] else {
            panic!()
        };
        assert!(matches!(
            parts[1],
            SearchValue::Quantity {
                prefix: Prefix::Gt,
                ..
            }
        ));
    }

    proptest::proptest! {
        #[test]
        fn the_parser_never_panics(name in "[_a-z:.A-Z-]{0,30}", value in "\\PC{0,40}") {
            let _ = parse("Observation", &[(name.clone(), value.clone())], &ParseOptions::default());
            let _ = parse("Patient", &[(name, value)], &ParseOptions { strict: true, base_url: "http://b".into() });
        }

        #[test]
        fn known_parameters_never_panic(value in "\\PC{0,40}") {
            for code in ["date", "code", "patient", "value-quantity", "code-value-quantity", "_lastUpdated", "subject:Patient.name", "_has:Observation:patient:code"] {
                let _ = parse("Observation", &[(code.to_owned(), value.clone())], &ParseOptions::default());
            }
        }
    }
}
