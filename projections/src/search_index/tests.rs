//! The search index fed a list of events, queried through the parser: each parameter type's
//! semantics, without HTTP.

use serde_json::{json, Value};
use sphere_domain::envelope::{EventMetadata, Position, RecordedEvent};
use sphere_domain::fhir::search_query::{parse, ParseOptions};

use super::*;

const BASE: &str = "https://ehr.example/fhir/r4";

struct Fixture {
    _dir: tempfile::TempDir,
    projection: SearchIndexProjection,
    position: u64,
    revisions: std::collections::HashMap<String, u64>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let projection = SearchIndexProjection::open(dir.path(), BASE).unwrap();
        Self {
            _dir: dir,
            projection,
            position: 0,
            revisions: Default::default(),
        }
    }

    fn event(&mut self, kind: &str, resource: &Value) {
        let stream = format!(
            "{}-{}",
            resource["resourceType"].as_str().unwrap(),
            resource["id"].as_str().unwrap()
        );
        let revision = match self.revisions.get(&stream) {
            Some(r) => r + 1,
            None => 0,
        };
        self.revisions.insert(stream.clone(), revision);
        self.position += 1;
        let event = RecordedEvent {
            position: Position(self.position),
            stream,
            revision,
            event_id: uuid::Uuid::new_v4(),
            event_type: kind.into(),
            data: bytes::Bytes::from(serde_json::to_vec(resource).unwrap()),
            metadata: EventMetadata {
                commit_ms: 1_700_000_000_000 + self.position as i64,
                ..EventMetadata::default()
            },
        };
        assert!(self
            .projection
            .filter()
            .matches(&event.stream, &event.event_type));
        self.projection.apply(&event).unwrap();
    }

    fn put(&mut self, resource: Value) {
        let kind = if self.revisions.contains_key(&format!(
            "{}-{}",
            resource["resourceType"].as_str().unwrap(),
            resource["id"].as_str().unwrap()
        )) {
            "ResourceUpdated"
        } else {
            "ResourceCreated"
        };
        self.event(kind, &resource);
    }

    fn delete(&mut self, resource_type: &str, id: &str) {
        self.event(
            "ResourceDeleted",
            &json!({"resourceType": resource_type, "id": id}),
        );
    }

    fn commit(&mut self) {
        self.projection.commit(Position(self.position)).unwrap();
    }

    /// Ids matching `query` on `resource_type`, in result order.
    fn ids(&self, resource_type: &str, query: &str) -> Vec<String> {
        self.ids_seen_by(resource_type, query, &SeesAll)
    }

    /// As [`Fixture::ids`], for a searcher that sees only what `visibility` lets it see.
    fn ids_seen_by(
        &self,
        resource_type: &str,
        query: &str,
        visibility: &dyn Visibility,
    ) -> Vec<String> {
        let pairs: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let q = parse(
            resource_type,
            &pairs,
            &ParseOptions {
                strict: true,
                base_url: BASE.into(),
            },
        )
        .unwrap_or_else(|e| panic!("{query}: {e}"));
        self.projection
            .handle()
            .snapshot()
            .search(&q, None, visibility)
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect()
    }
}

fn patient(id: &str, family: &str, given: &str, birth: &str, gender: &str) -> Value {
    json!({"resourceType": "Patient", "id": id,
        "meta": {"lastUpdated": "2024-01-01T00:00:00Z", "tag": [{"system": "urn:tags", "code": "Synthetic"}]},
        "identifier": [{"system": "urn:mrn", "value": format!("MRN-{id}")}],
        "name": [{"family": family, "given": [given]}],
        "gender": gender, "birthDate": birth,
        "address": [{"city": "Zürich", "state": "MA", "postalCode": "02101"}]})
}

fn observation(
    id: &str,
    patient: &str,
    category: &str,
    loinc: &str,
    when: &str,
    value: f64,
) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc, "display": "Hemoglobin A1c"}], "text": "HbA1c"},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}})
}

fn population() -> Fixture {
    let mut f = Fixture::new();
    f.put(patient("p1", "Müller", "Anna", "1980-05-17", "female"));
    f.put(patient("p2", "Smith", "John", "1975-01-02", "male"));
    f.put(patient("p3", "Smithers", "Waylon", "1990-12-31", "male"));
    f.put(observation(
        "o1",
        "p1",
        "laboratory",
        "4548-4",
        "2024-03-15T10:00:00Z",
        6.5,
    ));
    f.put(observation(
        "o2",
        "p1",
        "vital-signs",
        "8867-4",
        "2024-03-16",
        72.0,
    ));
    f.put(observation(
        "o3",
        "p2",
        "laboratory",
        "4548-4",
        "2023-11-01",
        5.4,
    ));
    f.put(
        json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
        "subject": {"reference": format!("{BASE}/Patient/p1")},
        "period": {"start": "2024-03-15T09:00:00Z", "end": "2024-03-15T11:00:00Z"}}),
    );
    f.commit();
    f
}

#[test]
fn strings_match_by_prefix_without_case_or_accents() {
    let f = population();
    assert_eq!(f.ids("Patient", "name=smith"), ["p2", "p3"]);
    assert_eq!(f.ids("Patient", "family=MULLER"), ["p1"]);
    assert_eq!(f.ids("Patient", "name:exact=Smith"), ["p2"]);
    assert_eq!(f.ids("Patient", "name:contains=ither"), ["p3"]);
    assert_eq!(f.ids("Patient", "address-city=zur"), ["p1", "p2", "p3"]);
    assert_eq!(f.ids("Patient", "name=anna,john"), ["p1", "p2"]);
}

#[test]
fn tokens_match_system_and_code_case_insensitively() {
    let f = population();
    let cat = "http://terminology.hl7.org/CodeSystem/observation-category";
    assert_eq!(f.ids("Observation", "category=laboratory"), ["o1", "o3"]);
    assert_eq!(
        f.ids("Observation", &format!("category={cat}|LABORATORY")),
        ["o1", "o3"]
    );
    assert!(f.ids("Observation", "category=other|laboratory").is_empty());
    assert!(f.ids("Observation", "category=|laboratory").is_empty());
    assert_eq!(f.ids("Observation", &format!("category={cat}|")).len(), 3);
    assert_eq!(f.ids("Observation", "category:not=laboratory"), ["o2"]);
    assert_eq!(f.ids("Observation", "code:text=hba1"), ["o1", "o2", "o3"]);
    assert_eq!(f.ids("Patient", "identifier=urn:mrn|mrn-p2"), ["p2"]);
    assert_eq!(f.ids("Patient", "gender=male"), ["p2", "p3"]);
    assert_eq!(f.ids("Patient", "_id=p1,p3"), ["p1", "p3"]);
    assert_eq!(
        f.ids("Patient", "_tag=urn:tags|synthetic"),
        ["p1", "p2", "p3"]
    );
}

#[test]
fn references_match_id_type_and_absolute_urls() {
    let f = population();
    for q in [
        "patient=p1",
        "patient=Patient/p1",
        &format!("patient={BASE}/Patient/p1"),
        "subject:Patient=p1",
    ] {
        assert_eq!(f.ids("Observation", q), ["o1", "o2"], "{q}");
    }
    assert_eq!(f.ids("Encounter", "patient=p1"), ["e1"]);
    assert_eq!(
        f.ids("Observation", "patient=p1&category=laboratory"),
        ["o1"]
    );
}

#[test]
fn dates_compare_as_ranges() {
    let f = population();
    assert_eq!(f.ids("Observation", "date=2024-03"), ["o1", "o2"]);
    assert_eq!(f.ids("Observation", "date=2024-03-15"), ["o1"]);
    assert_eq!(f.ids("Observation", "date=gt2024-03-15"), ["o2"]);
    assert_eq!(f.ids("Observation", "date=ge2024-03-15"), ["o1", "o2"]);
    assert_eq!(f.ids("Observation", "date=lt2024"), ["o3"]);
    assert_eq!(f.ids("Observation", "date=le2024-03-15"), ["o1", "o3"]);
    assert_eq!(f.ids("Observation", "date=ne2024-03-15"), ["o2", "o3"]);
    assert_eq!(f.ids("Observation", "date=sa2024-01-01"), ["o1", "o2"]);
    assert_eq!(f.ids("Observation", "date=eb2024"), ["o3"]);
    assert_eq!(
        f.ids("Observation", "date=ge2024-01-01&date=lt2024-03-16"),
        ["o1"]
    );
    assert_eq!(f.ids("Encounter", "date=2024-03-15"), ["e1"]);
    assert_eq!(f.ids("Patient", "birthdate=1980&name=anna"), ["p1"]);
    assert_eq!(
        f.ids("Patient", "_lastUpdated=ge2024-01-01"),
        ["p1", "p2", "p3"]
    );
}

#[test]
fn quantities_compare_by_significant_figures() {
    let f = population();
    assert_eq!(f.ids("Observation", "value-quantity=6.5"), ["o1"]);
    assert_eq!(f.ids("Observation", "value-quantity=gt6"), ["o1", "o2"]);
    assert_eq!(
        f.ids(
            "Observation",
            "value-quantity=lt6|http://unitsofmeasure.org|%"
        ),
        ["o3"]
    );
    assert!(f
        .ids(
            "Observation",
            "value-quantity=lt6|http://unitsofmeasure.org|mg"
        )
        .is_empty());
    assert_eq!(
        f.ids(
            "Observation",
            "code-value-quantity=http://loinc.org|4548-4$gt6"
        ),
        ["o1"]
    );
}

#[test]
fn missing_chains_and_reverse_chains() {
    let mut f = population();
    f.put(json!({"resourceType": "Observation", "id": "o4", "status": "final", "code": {"text": "x"}}));
    f.commit();
    assert_eq!(f.ids("Observation", "subject:missing=true"), ["o4"]);
    assert_eq!(f.ids("Observation", "subject:missing=false").len(), 3);
    assert_eq!(f.ids("Observation", "subject:Patient.name=smith"), ["o3"]);
    assert_eq!(f.ids("Observation", "patient.birthdate=1980"), ["o1", "o2"]);
    assert_eq!(
        f.ids("Patient", "_has:Observation:patient:code=4548-4"),
        ["p1", "p2"]
    );
    assert_eq!(
        f.ids("Patient", "_has:Observation:patient:category=vital-signs"),
        ["p1"]
    );
}

#[test]
fn sort_by_several_keys() {
    let f = population();
    assert_eq!(f.ids("Observation", "_sort=-date"), ["o2", "o1", "o3"]);
    assert_eq!(
        f.ids("Observation", "_sort=category,-date"),
        ["o1", "o3", "o2"]
    );
    assert_eq!(f.ids("Patient", "_sort=birthdate"), ["p2", "p1", "p3"]);
}

#[test]
fn updates_replace_and_deletes_remove_the_document() {
    let mut f = population();
    f.put(patient("p2", "Jones", "John", "1975-01-02", "male"));
    f.delete("Patient", "p3");
    f.commit();
    assert!(f.ids("Patient", "name=smith").is_empty());
    assert_eq!(f.ids("Patient", "name=jones"), ["p2"]);
    let snap = f.projection.handle().snapshot();
    assert_eq!(snap.get("Patient", "p2").unwrap().unwrap().version, 2);
    assert!(snap.get("Patient", "p3").unwrap().is_none());
    assert_eq!(snap.compartment("p1", &[], None).unwrap().len(), 4);
}

#[test]
fn the_checkpoint_is_committed_with_the_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut p = SearchIndexProjection::open(dir.path(), BASE).unwrap();
        assert_eq!(p.checkpoint(), None);
        p.commit(Position(42)).unwrap();
    }
    let mut p = SearchIndexProjection::open(dir.path(), BASE).unwrap();
    assert_eq!(p.checkpoint(), Some(Position(42)));
    p.reset().unwrap();
    assert_eq!(p.checkpoint(), None);
}

#[test]
fn an_index_of_another_format_is_dropped_for_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut p = SearchIndexProjection::open(dir.path(), BASE).unwrap();
        p.commit(Position(7)).unwrap();
    }
    // Same format: kept with its checkpoint.
    assert_eq!(
        SearchIndexProjection::open(dir.path(), BASE)
            .unwrap()
            .checkpoint(),
        Some(Position(7))
    );
    // Written by an older version (no or another format marker): replayed from the start.
    std::fs::write(dir.path().join("sphere-index-format"), "1").unwrap();
    let p = SearchIndexProjection::open(dir.path(), BASE).unwrap();
    assert_eq!(p.checkpoint(), None);
    drop(p);
    assert_eq!(
        SearchIndexProjection::open(dir.path(), BASE)
            .unwrap()
            .checkpoint(),
        None,
        "the marker is rewritten, so the fresh index is kept"
    );
}

#[test]
fn text_and_content_match_words_as_prefixes() {
    let mut f = Fixture::new();
    f.put(json!({"resourceType": "Patient", "id": "n1",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Café <i>owner</i></div>"},
        "name": [{"family": "Gödel"}]}));
    f.put(json!({"resourceType": "Patient", "id": "n2", "name": [{"family": "Cafferty"}]}));
    f.commit();
    assert_eq!(f.ids("Patient", "_text=cafe"), ["n1"]);
    assert_eq!(f.ids("Patient", "_text=OWN"), ["n1"]);
    assert_eq!(
        f.ids("Patient", "_text=xmlns"),
        Vec::<String>::new(),
        "markup is not text"
    );
    assert_eq!(f.ids("Patient", "_content=caf"), ["n1", "n2"]);
    assert_eq!(f.ids("Patient", "_content=godel"), ["n1"]);
    assert_eq!(f.ids("Patient", "_content=caf owner"), ["n1"]);
}

/// p1's laboratory Observations and every Patient.
struct LabsOfP1;

impl Visibility for LabsOfP1 {
    fn compartment(&self, resource_type: &str) -> Option<&str> {
        (resource_type == "Observation").then_some("p1")
    }

    fn checks_each(&self, resource_type: &str) -> bool {
        resource_type == "Observation"
    }

    fn admits(&self, _resource_type: &str, resource: &Value) -> bool {
        resource["category"][0]["coding"][0]["code"] == "laboratory"
    }
}

#[test]
fn searches_and_their_sub_searches_see_only_what_the_searcher_may_see() {
    let f = population();
    assert_eq!(f.ids_seen_by("Observation", "", &LabsOfP1), ["o1"]);
    assert_eq!(
        f.ids_seen_by("Observation", "subject:Patient.name=smith", &LabsOfP1),
        Vec::<String>::new()
    );
    assert_eq!(
        f.ids_seen_by("Patient", "_has:Observation:patient:code=4548-4", &LabsOfP1),
        ["p1"],
        "p2's laboratory result is outside p1's compartment"
    );
    assert_eq!(
        f.ids_seen_by(
            "Patient",
            "_has:Observation:patient:category=vital-signs",
            &LabsOfP1
        ),
        Vec::<String>::new(),
        "p1's vital signs are not visible"
    );
}
