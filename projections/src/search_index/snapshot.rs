//! Searching one consistent view of the index: clauses become tantivy queries over the term
//! fields, chains and `_has` become sub-searches, the comparisons terms cannot express are
//! decided on the stored JSON (`evaluate.rs`), and hits come back sorted. Every search, the
//! sub-searches too, sees only what the searcher's [`Visibility`] lets it see.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use sphere_domain::fhir::search_query::{Clause, Modifier, RefQuery, SearchQuery, SearchValue};
use sphere_domain::fhir::search_value::{self, RefTarget};
use sphere_domain::fhir::{search_parameters, SearchParamDef, SearchParamType};
use tantivy::collector::DocSetCollector;
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, InvertedIndexRangeQuery, Occur, Query, TermQuery,
    TermSetQuery,
};
use tantivy::schema::{Field, IndexRecordOption, Value as _};
use tantivy::{DocAddress, Searcher, TantivyDocument, Term};

use super::document::{fold_code, term};
use super::evaluate;
use super::schema::Fields;
use super::visibility::Visibility;

/// Most resources a chain or `_has` sub-search may select before the request is refused as
/// too broad (each becomes a term of the outer query).
const MAX_SUB_RESULTS: usize = 100_000;
/// Most candidates a `_content` search reads (it is not indexed; each is parsed).
const MAX_CONTENT_SCAN: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum SearchIndexError {
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// The request selects too much to answer (400, not 500).
    #[error("{0}")]
    TooBroad(String),
    #[error("search index holds a damaged document: {0}")]
    Corrupt(String),
}

/// A resource version as the index stores it.
#[derive(Debug, Clone)]
pub struct StoredResource {
    pub resource_type: String,
    pub id: String,
    pub version: u64,
    pub last_updated: i64,
    /// The resource JSON exactly as the event carried it.
    pub json: Bytes,
}

/// A sort key value; missing values sort last in both directions.
#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    Missing,
    Int(i64),
    Float(f64),
    Str(String),
}

impl SortKey {
    /// Compares two keys ascending, with missing values last.
    pub fn compare(&self, other: &SortKey) -> Ordering {
        match (self, other) {
            (SortKey::Missing, SortKey::Missing) => Ordering::Equal,
            (SortKey::Missing, _) => Ordering::Greater,
            (_, SortKey::Missing) => Ordering::Less,
            (SortKey::Int(a), SortKey::Int(b)) => a.cmp(b),
            (SortKey::Float(a), SortKey::Float(b)) => a.total_cmp(b),
            (SortKey::Str(a), SortKey::Str(b)) => a.cmp(b),
            (SortKey::Int(_), _) => Ordering::Less,
            (_, SortKey::Int(_)) => Ordering::Greater,
            (SortKey::Float(_), _) => Ordering::Less,
            (_, SortKey::Float(_)) => Ordering::Greater,
        }
    }
}

/// A matching resource: where it is, its identity and its sort keys (in `_sort` order).
#[derive(Debug, Clone)]
pub struct Hit {
    pub address: DocAddress,
    pub resource_type: String,
    pub id: String,
    pub keys: Vec<SortKey>,
}

/// One searcher: every read of a request goes through the same snapshot.
pub struct Snapshot {
    searcher: Searcher,
    fields: Fields,
    base: Arc<str>,
}

type Candidates = Vec<(DocAddress, Option<Value>)>;

impl Snapshot {
    pub(super) fn new(searcher: Searcher, fields: Fields, base: Arc<str>) -> Self {
        Self {
            searcher,
            fields,
            base,
        }
    }

    /// Number of resources in the index.
    pub fn num_resources(&self) -> u64 {
        self.searcher.num_docs()
    }

    /// Every resource of `query.resource_type` that `visibility` lets the searcher see and that
    /// matches all its clauses (in `compartment`, a patient id, when given), sorted by `_sort`
    /// and then by id. Chains and `_has` match only through resources `visibility` lets the
    /// searcher see.
    pub fn search(
        &self,
        query: &SearchQuery,
        compartment: Option<&str>,
        visibility: &dyn Visibility,
    ) -> Result<Vec<Hit>, SearchIndexError> {
        let needs_json = !query.sort.is_empty();
        let candidates = self.candidates(
            &query.resource_type,
            &query.clauses,
            compartment,
            needs_json,
            visibility,
        )?;
        let mut hits = Vec::with_capacity(candidates.len());
        if needs_json {
            for (address, json) in candidates {
                let json = match json {
                    Some(j) => j,
                    None => self.load_json(address)?,
                };
                let id = json
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let keys = query
                    .sort
                    .iter()
                    .map(|s| sort_key(s.def, s.descending, &json, &self.base))
                    .collect();
                hits.push(Hit {
                    address,
                    resource_type: query.resource_type.clone(),
                    id,
                    keys,
                });
            }
            let descending: Vec<bool> = query.sort.iter().map(|s| s.descending).collect();
            hits.sort_by(|a, b| order_hits(a, b, &descending));
        } else {
            let addresses: Vec<DocAddress> = candidates.into_iter().map(|(a, _)| a).collect();
            let ids = self.ids_of(&addresses)?;
            for (address, id) in addresses.into_iter().zip(ids) {
                hits.push(Hit {
                    address,
                    resource_type: query.resource_type.clone(),
                    id,
                    keys: Vec::new(),
                });
            }
            hits.sort_by(|a, b| a.id.cmp(&b.id));
        }
        Ok(hits)
    }

    /// The ids of `resource_type` resources that `visibility` lets the searcher see and that
    /// match `clauses` (conditional interactions).
    pub fn matching_ids(
        &self,
        resource_type: &str,
        clauses: &[Clause],
        visibility: &dyn Visibility,
    ) -> Result<Vec<String>, SearchIndexError> {
        let candidates = self.candidates(resource_type, clauses, None, false, visibility)?;
        let addresses: Vec<DocAddress> = candidates.into_iter().map(|(a, _)| a).collect();
        let mut ids = self.ids_of(&addresses)?;
        ids.sort();
        Ok(ids)
    }

    /// The stored resource at `address`.
    pub fn load(&self, address: DocAddress) -> Result<StoredResource, SearchIndexError> {
        let doc: TantivyDocument = self.searcher.doc(address)?;
        let f = &self.fields;
        let text = |field: Field| {
            doc.get_first(field)
                .and_then(|v| v.as_str().map(str::to_owned))
                .ok_or_else(|| SearchIndexError::Corrupt(format!("{address:?} lacks a field")))
        };
        Ok(StoredResource {
            resource_type: text(f.resource_type)?,
            id: text(f.id)?,
            version: doc
                .get_first(f.version)
                .and_then(|v| v.as_u64())
                .unwrap_or(0),
            last_updated: doc
                .get_first(f.last_updated)
                .and_then(|v| v.as_i64())
                .unwrap_or(0),
            json: doc
                .get_first(f.resource)
                .and_then(|v| v.as_bytes().map(Bytes::copy_from_slice))
                .ok_or_else(|| SearchIndexError::Corrupt(format!("{address:?} lacks its JSON")))?,
        })
    }

    /// The current version of `resource_type/id`, if it exists and is not deleted.
    pub fn get(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<StoredResource>, SearchIndexError> {
        let q = TermQuery::new(
            Term::from_field_text(self.fields.key, &format!("{resource_type}/{id}")),
            IndexRecordOption::Basic,
        );
        let docs = self.searcher.search(&q, &DocSetCollector)?;
        match docs.into_iter().next() {
            Some(address) => Ok(Some(self.load(address)?)),
            None => Ok(None),
        }
    }

    /// Resources of `source_type` whose reference parameter `param` (every reference
    /// parameter of the type when None) points at one of `targets` (`Type/id`): `_revinclude`.
    pub fn referencing(
        &self,
        source_type: &str,
        param: Option<&str>,
        targets: &[String],
    ) -> Result<Vec<DocAddress>, SearchIndexError> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let codes: Vec<&str> = match param {
            Some(p) => vec![p],
            None => search_parameters(source_type)
                .iter()
                .filter(|d| d.param_type == SearchParamType::Reference)
                .map(|d| d.code.as_str())
                .collect(),
        };
        let terms: Vec<Term> = codes
            .iter()
            .flat_map(|c| targets.iter().map(move |t| self.term_of(c, t)))
            .collect();
        let q = BooleanQuery::new(vec![
            (Occur::Must, self.type_query(source_type)),
            (Occur::Must, Box::new(TermSetQuery::new(terms))),
        ]);
        let mut docs: Vec<DocAddress> = self
            .searcher
            .search(&q, &DocSetCollector)?
            .into_iter()
            .collect();
        docs.sort();
        Ok(docs)
    }

    /// Every resource in `patient`'s compartment (the Patient included), optionally only of
    /// `types` and changed at or after `since_ms`, sorted by type and id: `$everything`.
    pub fn compartment(
        &self,
        patient: &str,
        types: &[String],
        since_ms: Option<i64>,
    ) -> Result<Vec<Hit>, SearchIndexError> {
        let mut must: Vec<(Occur, Box<dyn Query>)> = vec![(
            Occur::Must,
            Box::new(TermQuery::new(
                Term::from_field_text(self.fields.compartment, patient),
                IndexRecordOption::Basic,
            )),
        )];
        if !types.is_empty() {
            let terms = types
                .iter()
                .map(|t| Term::from_field_text(self.fields.resource_type, t));
            must.push((Occur::Must, Box::new(TermSetQuery::new(terms))));
        }
        if let Some(since) = since_ms {
            must.push((
                Occur::Must,
                Box::new(InvertedIndexRangeQuery::new(
                    Bound::Included(Term::from_field_i64(self.fields.last_updated, since)),
                    Bound::Unbounded,
                )),
            ));
        }
        let docs: Vec<DocAddress> = self
            .searcher
            .search(&BooleanQuery::new(must), &DocSetCollector)?
            .into_iter()
            .collect();
        let mut hits = Vec::with_capacity(docs.len());
        for address in docs {
            let doc: TantivyDocument = self.searcher.doc(address)?;
            let get = |f: Field| {
                doc.get_first(f)
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            };
            hits.push(Hit {
                address,
                resource_type: get(self.fields.resource_type),
                id: get(self.fields.id),
                keys: Vec::new(),
            });
        }
        hits.sort_by(|a, b| (&a.resource_type, &a.id).cmp(&(&b.resource_type, &b.id)));
        Ok(hits)
    }

    fn term_of(&self, param: &str, value: &str) -> Term {
        Term::from_field_text(self.fields.terms, &term(param, value))
    }

    fn type_query(&self, resource_type: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(self.fields.resource_type, resource_type),
            IndexRecordOption::Basic,
        ))
    }

    fn load_json(&self, address: DocAddress) -> Result<Value, SearchIndexError> {
        let stored = self.load(address)?;
        serde_json::from_slice(&stored.json)
            .map_err(|e| SearchIndexError::Corrupt(format!("{address:?}: {e}")))
    }

    /// Ids from the `id` fast field, one per address, without touching the doc store. The
    /// ordinals of one segment are resolved in one sorted pass over its dictionary (each
    /// dictionary block is decoded once, not once per id).
    fn ids_of(&self, addresses: &[DocAddress]) -> Result<Vec<String>, SearchIndexError> {
        let mut ids = vec![String::new(); addresses.len()];
        let mut by_segment: HashMap<u32, Vec<(u64, usize)>> = HashMap::new();
        let mut columns = HashMap::new();
        for (i, address) in addresses.iter().enumerate() {
            if let std::collections::hash_map::Entry::Vacant(e) = columns.entry(address.segment_ord)
            {
                e.insert(
                    self.searcher
                        .segment_reader(address.segment_ord)
                        .fast_fields()
                        .str("id")?
                        .ok_or_else(|| SearchIndexError::Corrupt("no id column".into()))?,
                );
            }
            let column = &columns[&address.segment_ord];
            if let Some(ord) = column.term_ords(address.doc_id).next() {
                by_segment
                    .entry(address.segment_ord)
                    .or_default()
                    .push((ord, i));
            }
        }
        for (segment, mut wanted) in by_segment {
            wanted.sort_unstable();
            let ords: Vec<u64> = wanted.iter().map(|(o, _)| *o).collect();
            let mut next = wanted.iter().map(|(_, i)| *i);
            let mut bad = false;
            columns[&segment]
                .dictionary()
                .sorted_ords_to_term_cb(&ords, |bytes| match std::str::from_utf8(bytes) {
                    Ok(id) => {
                        if let Some(i) = next.next() {
                            ids[i] = id.to_owned();
                        }
                    }
                    Err(_) => bad = true,
                })
                .map_err(|e| SearchIndexError::Corrupt(e.to_string()))?;
            if bad {
                return Err(SearchIndexError::Corrupt("an id is not UTF-8".into()));
            }
        }
        Ok(ids)
    }

    /// Documents of `resource_type` that `visibility` admits and that match every clause; with
    /// their JSON when it was needed (or `want_json`).
    fn candidates(
        &self,
        resource_type: &str,
        clauses: &[Clause],
        compartment: Option<&str>,
        want_json: bool,
        visibility: &dyn Visibility,
    ) -> Result<Candidates, SearchIndexError> {
        let mut must: Vec<(Occur, Box<dyn Query>)> =
            vec![(Occur::Must, self.type_query(resource_type))];
        for patient in compartment
            .into_iter()
            .chain(visibility.compartment(resource_type))
        {
            must.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(self.fields.compartment, patient),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        let mut post = Vec::new();
        for clause in clauses {
            must.push((
                Occur::Must,
                self.clause_query(resource_type, clause, visibility)?,
            ));
            if let Clause::Param {
                def,
                modifier,
                values,
            } = clause
            {
                if evaluate::needs_json(def, modifier) && !matches!(modifier, Modifier::Missing(_))
                {
                    post.push((*def, modifier, values));
                }
            }
        }
        let mut docs: Vec<DocAddress> = self
            .searcher
            .search(&BooleanQuery::new(must), &DocSetCollector)?
            .into_iter()
            .collect();
        docs.sort();
        let check_each = visibility.checks_each(resource_type);
        if post.is_empty() && !want_json && !check_each {
            return Ok(docs.into_iter().map(|a| (a, None)).collect());
        }
        if docs.len() > MAX_CONTENT_SCAN && post.iter().any(|(def, _, _)| def.code == "_content") {
            // `_content` reads every candidate's JSON: other clauses must narrow it first.
            return Err(SearchIndexError::TooBroad(format!(
                "_content: more than {MAX_CONTENT_SCAN} {resource_type} resources to read; narrow the search with other parameters"
            )));
        }
        let mut out = Vec::with_capacity(docs.len());
        for address in docs {
            let json = self.load_json(address)?;
            if check_each && !visibility.admits(resource_type, &json) {
                continue;
            }
            if post.iter().all(|(def, modifier, values)| {
                evaluate::matches(def, modifier, values, &json, &self.base)
            }) {
                out.push((address, Some(json)));
            }
        }
        Ok(out)
    }

    fn clause_query(
        &self,
        resource_type: &str,
        clause: &Clause,
        visibility: &dyn Visibility,
    ) -> Result<Box<dyn Query>, SearchIndexError> {
        match clause {
            Clause::Param {
                def,
                modifier,
                values,
            } => Ok(self.param_query(def, modifier, values)),
            Clause::Chain {
                param,
                target_types,
                inner,
            } => {
                let mut terms = Vec::new();
                for t in target_types {
                    let found =
                        self.candidates(t, std::slice::from_ref(inner), None, false, visibility)?;
                    if found.len() > MAX_SUB_RESULTS {
                        return Err(too_broad(&param.code));
                    }
                    let addresses: Vec<DocAddress> = found.into_iter().map(|(a, _)| a).collect();
                    for id in self.ids_of(&addresses)? {
                        terms.push(self.term_of(&param.code, &format!("{t}/{id}")));
                    }
                }
                Ok(term_set(terms))
            }
            Clause::Has {
                source_type,
                param,
                inner,
            } => {
                let found = self.candidates(
                    source_type,
                    std::slice::from_ref(inner),
                    None,
                    true,
                    visibility,
                )?;
                if found.len() > MAX_SUB_RESULTS {
                    return Err(too_broad("_has"));
                }
                let mut ids = BTreeSet::new();
                for (_, json) in &found {
                    let Some(json) = json else { continue };
                    for f in param.extract(json).unwrap_or_default() {
                        for r in search_value::references(&f, &self.base) {
                            if let Some(RefTarget::Local {
                                resource_type: t,
                                id,
                            }) = r.target
                            {
                                if t == resource_type {
                                    ids.insert(id);
                                }
                            }
                        }
                    }
                }
                Ok(term_set(
                    ids.iter().map(|id| self.term_of("_id", id)).collect(),
                ))
            }
        }
    }

    fn has_query(&self, code: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(self.fields.has, code),
            IndexRecordOption::Basic,
        ))
    }

    fn param_query(
        &self,
        def: &SearchParamDef,
        modifier: &Modifier,
        values: &[SearchValue],
    ) -> Box<dyn Query> {
        let code = def.code.as_str();
        if let Modifier::Missing(missing) = modifier {
            return if *missing {
                not(self.has_query(code))
            } else {
                self.has_query(code)
            };
        }
        if code == "_content" {
            // Not indexed: every candidate is compared on its JSON.
            return Box::new(AllQuery);
        }
        if evaluate::needs_json(def, modifier) {
            return self.has_query(code);
        }
        let f = &self.fields;
        if code == "_text" {
            // Every word of a value, each as a prefix of a narrative word; values OR-ed.
            return union(
                values
                    .iter()
                    .filter_map(|v| match v {
                        SearchValue::String { raw, .. } => {
                            let mut words = Vec::new();
                            search_value::words(raw, &mut words);
                            Some(Box::new(BooleanQuery::new(
                                words
                                    .iter()
                                    .map(|w| (Occur::Must, prefix_query(f.strings, &term(code, w))))
                                    .collect(),
                            )) as Box<dyn Query>)
                        }
                        _ => None,
                    })
                    .collect(),
            );
        }
        match (def.param_type, modifier) {
            (SearchParamType::String, Modifier::Exact) => term_set(
                values
                    .iter()
                    .filter_map(|v| match v {
                        SearchValue::String { raw, .. } => {
                            Some(Term::from_field_text(f.exact, &term(code, raw)))
                        }
                        _ => None,
                    })
                    .collect(),
            ),
            (SearchParamType::String, _) | (SearchParamType::Token, Modifier::Text) => {
                let field = if def.param_type == SearchParamType::String {
                    f.strings
                } else {
                    f.texts
                };
                union(
                    values
                        .iter()
                        .filter_map(|v| match v {
                            SearchValue::String { folded, .. } => {
                                Some(prefix_query(field, &term(code, folded)))
                            }
                            _ => None,
                        })
                        .collect(),
                )
            }
            (SearchParamType::Token, _) => {
                let terms = values
                    .iter()
                    .filter_map(|v| match v {
                        SearchValue::Token { system, code: c } => Some(match (system, c) {
                            (None, Some(c)) => fold_code(code, c),
                            (Some(s), Some(c)) => format!("{s}|{}", fold_code(code, c)),
                            (Some(s), None) => format!("{s}|"),
                            (None, None) => return None,
                        }),
                        SearchValue::OfType {
                            system,
                            code: c,
                            value,
                        } => Some(format!(
                            "#t{system}|{}|{}",
                            c.to_lowercase(),
                            value.to_lowercase()
                        )),
                        _ => None,
                    })
                    .map(|t| self.term_of(code, &t))
                    .collect();
                let q = term_set(terms);
                if *modifier == Modifier::Not {
                    not(q)
                } else {
                    q
                }
            }
            (SearchParamType::Reference, _) => {
                let terms = values
                    .iter()
                    .filter_map(|v| match v {
                        SearchValue::Reference(RefQuery::Local { resource_type, id }) => {
                            let t = resource_type.clone().or(match modifier {
                                Modifier::Type(t) => Some(t.clone()),
                                _ => None,
                            });
                            Some(match t {
                                Some(t) => format!("{t}/{id}"),
                                None => id.clone(),
                            })
                        }
                        SearchValue::Reference(RefQuery::Url(u)) => Some(u.clone()),
                        SearchValue::Identifier { system, value } => {
                            let v = value.as_deref().unwrap_or("").to_lowercase();
                            Some(match system {
                                Some(s) => format!("#i{s}|{v}"),
                                None => format!("#i{v}"),
                            })
                        }
                        _ => None,
                    })
                    .map(|t| self.term_of(code, &t))
                    .collect();
                term_set(terms)
            }
            (SearchParamType::Uri, Modifier::Below) => union(
                values
                    .iter()
                    .filter_map(|v| match v {
                        SearchValue::Uri(u) => Some(prefix_query(f.terms, &term(code, u))),
                        _ => None,
                    })
                    .collect(),
            ),
            (SearchParamType::Uri, _) => {
                let mut terms = Vec::new();
                for v in values {
                    if let SearchValue::Uri(u) = v {
                        if *modifier == Modifier::Above {
                            // Every ancestor path of the URI (and the URI itself).
                            for (i, _) in u.match_indices('/') {
                                terms.push(self.term_of(code, &u[..i]));
                            }
                        }
                        terms.push(self.term_of(code, u));
                    }
                }
                term_set(terms)
            }
            _ => Box::new(EmptyQuery),
        }
    }
}

fn too_broad(what: &str) -> SearchIndexError {
    SearchIndexError::TooBroad(format!(
        "{what}: the chained search selects more than {MAX_SUB_RESULTS} resources; narrow it"
    ))
}

/// Above this many terms a set is one automaton over the term dictionary; below, a union of
/// term lookups (building the automaton costs more than a few lookups: it was most of the CPU
/// of a `patient=X&category=Y` search).
const TERM_SET_AUTOMATON: usize = 32;

fn term_set(mut terms: Vec<Term>) -> Box<dyn Query> {
    match terms.len() {
        0 => Box::new(EmptyQuery),
        1 => Box::new(TermQuery::new(
            terms.pop().expect("one term"),
            IndexRecordOption::Basic,
        )),
        n if n <= TERM_SET_AUTOMATON => Box::new(BooleanQuery::new(
            terms
                .into_iter()
                .map(|t| {
                    (
                        Occur::Should,
                        Box::new(TermQuery::new(t, IndexRecordOption::Basic)) as Box<dyn Query>,
                    )
                })
                .collect(),
        )),
        _ => Box::new(TermSetQuery::new(terms)),
    }
}

fn union(queries: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    if queries.is_empty() {
        return Box::new(EmptyQuery);
    }
    Box::new(BooleanQuery::new(
        queries.into_iter().map(|q| (Occur::Should, q)).collect(),
    ))
}

fn not(q: Box<dyn Query>) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(vec![
        (Occur::Must, Box::new(AllQuery)),
        (Occur::MustNot, q),
    ]))
}

/// Terms of `field` starting with `prefix`.
fn prefix_query(field: Field, prefix: &str) -> Box<dyn Query> {
    let mut upper = prefix.to_owned();
    upper.push(char::MAX);
    Box::new(InvertedIndexRangeQuery::new(
        Bound::Included(Term::from_field_text(field, prefix)),
        Bound::Excluded(Term::from_field_text(field, &upper)),
    ))
}

pub fn order_hits(a: &Hit, b: &Hit, descending: &[bool]) -> Ordering {
    for ((ka, kb), desc) in a.keys.iter().zip(&b.keys).zip(descending) {
        let o = match (ka, kb) {
            // Missing last in both directions.
            (SortKey::Missing, _) | (_, SortKey::Missing) => ka.compare(kb),
            _ if *desc => kb.compare(ka),
            _ => ka.compare(kb),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.id.cmp(&b.id)
}

/// The sort key of `resource` for parameter `def`: the lowest value ascending, the highest
/// descending (dates by their range ends).
pub fn sort_key(def: &SearchParamDef, descending: bool, resource: &Value, base: &str) -> SortKey {
    let found = def.extract(resource).unwrap_or_default();
    let pick_i = |v: Vec<i64>| {
        let m = if descending {
            v.into_iter().max()
        } else {
            v.into_iter().min()
        };
        m.map_or(SortKey::Missing, SortKey::Int)
    };
    let pick_s = |mut v: Vec<String>| {
        v.sort();
        let m = if descending {
            v.pop()
        } else {
            v.into_iter().next()
        };
        m.map_or(SortKey::Missing, SortKey::Str)
    };
    match def.param_type {
        SearchParamType::Date => pick_i(
            found
                .iter()
                .flat_map(search_value::dates)
                .map(|r| if descending { r.high } else { r.low })
                .collect(),
        ),
        SearchParamType::Number | SearchParamType::Quantity => {
            let mut v: Vec<f64> = found
                .iter()
                .flat_map(|f| {
                    search_value::numbers(f).into_iter().map(|n| n.value).chain(
                        search_value::quantities(f)
                            .into_iter()
                            .map(|q| q.number.value),
                    )
                })
                .collect();
            v.sort_by(f64::total_cmp);
            let m = if descending {
                v.pop()
            } else {
                v.first().copied()
            };
            m.map_or(SortKey::Missing, SortKey::Float)
        }
        SearchParamType::String => pick_s(
            found
                .iter()
                .flat_map(search_value::strings)
                .map(|s| search_value::normalize(&s))
                .collect(),
        ),
        SearchParamType::Token => pick_s(
            found
                .iter()
                .flat_map(search_value::tokens)
                .filter_map(|t| t.code.map(|c| c.to_lowercase()))
                .collect(),
        ),
        SearchParamType::Reference => pick_s(
            found
                .iter()
                .flat_map(|f| search_value::references(f, base))
                .filter_map(|r| match r.target {
                    Some(RefTarget::Local { resource_type, id }) => {
                        Some(format!("{resource_type}/{id}"))
                    }
                    Some(RefTarget::Url(u)) => Some(u),
                    None => None,
                })
                .collect(),
        ),
        SearchParamType::Uri => pick_s(found.iter().flat_map(search_value::uris).collect()),
        _ => SortKey::Missing,
    }
}
