//! One resource version -> one tantivy document: the search parameters' values as terms, the
//! resource JSON stored.
//!
//! Term layout (every indexed term starts with the parameter code and [`SEP`], so one field
//! serves every parameter of every type; the `type` field keeps types apart):
//! - `terms`: tokens as `code|` + `system|code`, bare `code`, and `system|`; references as
//!   `Type/id` and bare `id`, foreign ones as their URL, identifiers as `#i` + `system|value`;
//!   URIs as given. Token codes and identifier values are case-folded (`_id` is not).
//! - `strings`: each string part folded (case, accents, spaces), for prefix and contains search;
//!   for `_text`, each word of the narrative.
//! - `exact`: each string part as written, for `:exact`.
//! - `texts`: token display/text folded, for `:text`.
//! - `has`: the codes of parameters with at least one value (`:missing`, and the cheap first
//!   cut for the parameters compared on the stored JSON: dates, numbers, quantities, composites).

use serde_json::Value;
use sphere_domain::fhir::search_value::{self, RefTarget};
use sphere_domain::fhir::{patient_compartment_params, search_parameter, search_parameters};
use sphere_domain::fhir::{SearchParamDef, SearchParamType};
use tantivy::TantivyDocument;

use super::schema::Fields;

/// Separates a parameter code from the value in an indexed term.
pub const SEP: char = '\u{1f}';

/// Case folding of a token value: every parameter but `_id` matches codes case-insensitively.
pub fn fold_code(param: &str, code: &str) -> String {
    if param == "_id" {
        code.to_owned()
    } else {
        code.to_lowercase()
    }
}

pub fn term(param: &str, value: &str) -> String {
    let mut s = String::with_capacity(param.len() + 1 + value.len());
    s.push_str(param);
    s.push(SEP);
    s.push_str(value);
    s
}

/// The patient ids whose compartment holds `resource`.
pub fn compartment_patients(
    resource_type: &str,
    id: &str,
    resource: &Value,
    base: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    if resource_type == "Patient" {
        out.push(id.to_owned());
    }
    for code in patient_compartment_params(resource_type) {
        let Some(def) = search_parameter(resource_type, code) else {
            continue;
        };
        for found in def.extract(resource).unwrap_or_default() {
            for r in search_value::references(&found, base) {
                if let Some(RefTarget::Local { resource_type, id }) = r.target {
                    if resource_type == "Patient" && !out.contains(&id) {
                        out.push(id);
                    }
                }
            }
        }
    }
    out
}

/// Adds every search parameter's values of `resource` to `doc`.
pub fn add_parameters(
    doc: &mut TantivyDocument,
    fields: &Fields,
    resource_type: &str,
    resource: &Value,
    base: &str,
) {
    for def in search_parameters(resource_type) {
        if def.path.is_none() {
            match def.code.as_str() {
                "deceased" if resource_type == "Patient" => add_deceased(doc, fields, resource),
                "_text" => {
                    if let Some(div) = resource.pointer("/text/div").and_then(Value::as_str) {
                        add_words(doc, fields, "_text", std::iter::once(div));
                    }
                }
                _ => {}
            }
            continue;
        }
        let found = def.extract(resource).unwrap_or_default();
        if found.is_empty() {
            continue;
        }
        let mut any = false;
        for f in &found {
            any |= add_values(doc, fields, def, f, base);
        }
        if any {
            doc.add_text(fields.has, &def.code);
        }
    }
}

/// Most distinct words indexed per resource for `_text` (a bound on what one large narrative
/// can add to the index).
const MAX_WORDS: usize = 4096;

/// `_text`: each distinct word of `texts` as a `strings` term of `code`, so a search word
/// matches as a prefix like any string search. (`_content` is not indexed: every string of
/// every resource would cost the index more than the rare search saves; it is decided on the
/// stored JSON of the candidates the other clauses leave.)
fn add_words<'a>(
    doc: &mut TantivyDocument,
    fields: &Fields,
    code: &str,
    texts: impl Iterator<Item = &'a str>,
) {
    let mut words = Vec::new();
    for text in texts {
        search_value::words(text, &mut words);
    }
    let mut seen = std::collections::HashSet::with_capacity(words.len());
    for word in words {
        if seen.len() >= MAX_WORDS {
            break;
        }
        seen.insert(word);
    }
    for word in &seen {
        doc.add_text(fields.strings, term(code, word));
    }
    if !seen.is_empty() {
        doc.add_text(fields.has, code);
    }
}

/// `Patient.deceased.exists() and Patient.deceased != false`: a boolean by hand.
fn add_deceased(doc: &mut TantivyDocument, fields: &Fields, resource: &Value) {
    let deceased = match (
        resource.get("deceasedBoolean"),
        resource.get("deceasedDateTime"),
    ) {
        (Some(Value::Bool(b)), _) => *b,
        (_, Some(_)) => true,
        _ => false,
    };
    doc.add_text(fields.terms, term("deceased", &deceased.to_string()));
    doc.add_text(fields.has, "deceased");
}

fn add_values(
    doc: &mut TantivyDocument,
    fields: &Fields,
    def: &SearchParamDef,
    found: &sphere_domain::fhir::Found<'_>,
    base: &str,
) -> bool {
    let code = def.code.as_str();
    match def.param_type {
        SearchParamType::Token => {
            let tokens = search_value::tokens(found);
            for t in &tokens {
                if let Some(c) = &t.code {
                    let c = fold_code(code, c);
                    let system = t.system.as_deref().unwrap_or("");
                    doc.add_text(fields.terms, term(code, &c));
                    doc.add_text(fields.terms, term(code, &format!("{system}|{c}")));
                    for (ts, tc) in &t.of_type {
                        doc.add_text(
                            fields.terms,
                            term(
                                code,
                                &format!(
                                    "#t{}|{}|{c}",
                                    ts.as_deref().unwrap_or(""),
                                    tc.to_lowercase()
                                ),
                            ),
                        );
                    }
                }
                if let Some(s) = &t.system {
                    doc.add_text(fields.terms, term(code, &format!("{s}|")));
                }
                if let Some(text) = &t.text {
                    doc.add_text(fields.texts, term(code, &search_value::normalize(text)));
                }
            }
            !tokens.is_empty()
        }
        SearchParamType::String => {
            let strings = search_value::strings(found);
            for s in &strings {
                doc.add_text(fields.strings, term(code, &search_value::normalize(s)));
                doc.add_text(fields.exact, term(code, s));
            }
            !strings.is_empty()
        }
        SearchParamType::Reference => {
            let refs = search_value::references(found, base);
            for r in &refs {
                match &r.target {
                    Some(RefTarget::Local { resource_type, id }) => {
                        doc.add_text(fields.terms, term(code, &format!("{resource_type}/{id}")));
                        doc.add_text(fields.terms, term(code, id));
                    }
                    Some(RefTarget::Url(url)) => doc.add_text(fields.terms, term(code, url)),
                    None => {}
                }
                if let Some(i) = &r.identifier {
                    let value = i.code.as_deref().map(str::to_lowercase).unwrap_or_default();
                    let system = i.system.as_deref().unwrap_or("");
                    doc.add_text(fields.terms, term(code, &format!("#i{system}|{value}")));
                    doc.add_text(fields.terms, term(code, &format!("#i{value}")));
                }
            }
            !refs.is_empty()
        }
        SearchParamType::Uri => {
            let uris = search_value::uris(found);
            for u in &uris {
                doc.add_text(fields.terms, term(code, u));
            }
            !uris.is_empty()
        }
        // Compared on the stored JSON by the query evaluator; only their presence is indexed.
        SearchParamType::Date
        | SearchParamType::Number
        | SearchParamType::Quantity
        | SearchParamType::Composite => true,
        SearchParamType::Special => false,
    }
}
