//! One patient's record: demographics, a timeline of encounters and everything recorded at them.
//!
//! Patients follow archetypes (by index, so that every archetype is present in any population of
//! eight or more patients whatever the seed); the seed varies everything within an archetype:
//! names, dates, values, which acute problems come up.

mod care;
mod observations;
mod visits;

use serde_json::{Map, Value};

use super::codes::{self, ConditionCode};
use super::datatypes::{reference, resource, set, simple_concept};
use super::rng::SplitMix64;
use super::shared::{self, SharedIds};
use super::time::{CalendarDate, Moment};
use super::{patient_id, GenerateConfig, SERVICE_ORGANIZATION_ID};

/// The kinds of patient the population cycles through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archetype {
    /// 20-42, female: pregnancy status and intent, asthma, emergency visit.
    ReproductiveWoman,
    /// 62-84, male: diabetes, hypertension, hyperlipidemia, a pacemaker implanted in hospital.
    OlderMan,
    /// 3-22 months: well-child visits, head circumference, weight-for-length.
    Infant,
    /// 4-15 years: BMI-for-age, asthma, childhood vaccines.
    Child,
    /// 45-63, female: hypertension, depression, food insecurity, a colonoscopy.
    MidlifeWoman,
    /// 72-92, died within the last year: COPD, a hip replacement, a final admission.
    DeceasedElder,
    /// 18-34: gender identity and sexual orientation vary, GERD, emergency visit.
    YoungAdult,
    /// 38-64, male: type 2 diabetes (the Group cohort).
    DiabeticAdult,
}

const ARCHETYPES: [Archetype; 8] = [
    Archetype::ReproductiveWoman,
    Archetype::OlderMan,
    Archetype::Infant,
    Archetype::Child,
    Archetype::MidlifeWoman,
    Archetype::DeceasedElder,
    Archetype::YoungAdult,
    Archetype::DiabeticAdult,
];

pub fn archetype(index: u32) -> Archetype {
    ARCHETYPES[index as usize % ARCHETYPES.len()]
}

/// Whether the patient at `index` has type 2 diabetes (decided by archetype, so that the cohort
/// Group can be listed without generating any record).
pub fn in_diabetes_cohort(index: u32) -> bool {
    matches!(
        archetype(index),
        Archetype::OlderMan | Archetype::DiabeticAdult
    )
}

/// A condition already emitted, so later resources can point at it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub id: String,
    pub code: ConditionCode,
}

/// The state of one record under construction. Resources go to the sink as soon as they are
/// built; only ids and a few facts are kept for later references.
pub struct Record<'a, S: FnMut(Value)> {
    pub ids: SharedIds,
    pub rng: SplitMix64,
    pub pid: String,
    sink: &'a mut S,
    counter: u32,
    pub archetype: Archetype,
    pub female: bool,
    pub birth: CalendarDate,
    /// The end of the timeline: `as_of`, or the date of death.
    pub end: Moment,
    pub deceased: Option<Moment>,
    pub family: &'static str,
    pub given: &'static str,
    /// Index into `shared::PRACTITIONERS` of the primary care practitioner.
    pub pcp: usize,
    pub related_person: String,
    pub chronic: Vec<Recorded>,
    /// Adult height (cm) and body-mass index: fixed per patient so vital signs stay coherent.
    pub adult_height_cm: f64,
    pub adult_bmi: f64,
}

pub fn emit(config: &GenerateConfig, index: u32, sink: &mut impl FnMut(Value)) {
    let mut rng = SplitMix64::derive(config.seed, u64::from(index));
    let archetype = archetype(index);
    let as_of = Moment::at(config.as_of, 0, 0);
    let (min_days, max_days) = match archetype {
        Archetype::ReproductiveWoman => (20 * 365, 42 * 365),
        Archetype::OlderMan => (62 * 365, 84 * 365),
        Archetype::Infant => (95, 22 * 30),
        Archetype::Child => (4 * 365, 15 * 365),
        Archetype::MidlifeWoman => (45 * 365, 63 * 365),
        Archetype::DeceasedElder => (72 * 365, 92 * 365),
        Archetype::YoungAdult => (18 * 365 + 30, 34 * 365),
        Archetype::DiabeticAdult => (38 * 365, 64 * 365),
    };
    let age_days = rng.range(min_days, max_days);
    let birth = CalendarDate::from_days(config.as_of.to_days() - age_days);
    let female = match archetype {
        Archetype::ReproductiveWoman | Archetype::MidlifeWoman => true,
        Archetype::OlderMan | Archetype::DiabeticAdult => false,
        _ => rng.chance(0.5),
    };
    let deceased = (archetype == Archetype::DeceasedElder).then(|| {
        Moment::at(config.as_of, 0, 0)
            .plus_days(-rng.range(30, 330))
            .plus_minutes(rng.range(0, 24 * 60))
    });
    let given = if female {
        *rng.pick(codes::GIVEN_FEMALE)
    } else {
        *rng.pick(codes::GIVEN_MALE)
    };
    let family = *rng.pick(codes::FAMILY_NAMES);
    let pcp = match archetype {
        Archetype::Infant | Archetype::Child => shared::PEDIATRICS,
        Archetype::OlderMan | Archetype::DeceasedElder => shared::INTERNAL_MEDICINE,
        _ => {
            if rng.chance(0.7) {
                shared::FAMILY_MEDICINE
            } else {
                shared::NURSE_PRACTITIONER
            }
        }
    };
    let adult_height_cm = if female {
        rng.decimal(152.0, 176.0, 1)
    } else {
        rng.decimal(163.0, 191.0, 1)
    };
    let adult_bmi = if in_diabetes_cohort(index) {
        rng.decimal(27.0, 36.0, 1)
    } else {
        rng.decimal(19.5, 31.0, 1)
    };
    let pid = patient_id(config, index);
    let related_person = format!("{pid}-rp");
    let mut record = Record {
        ids: SharedIds::new(config),
        rng,
        pid,
        sink,
        counter: 0,
        archetype,
        female,
        birth,
        end: deceased.unwrap_or(as_of),
        deceased,
        family,
        given,
        pcp,
        related_person,
        chronic: Vec::new(),
        adult_height_cm,
        adult_bmi,
    };
    record.build();
}

impl<S: FnMut(Value)> Record<'_, S> {
    fn build(&mut self) {
        self.patient();
        self.related_person();
        let schedule = self.schedule();
        self.coverage();
        self.chronic_conditions();
        self.allergies();
        self.care_team();
        let latest_wellness = schedule
            .iter()
            .rev()
            .find(|v| v.kind == visits::VisitKind::Wellness)
            .or_else(|| schedule.first())
            .map(|v| (v.id.clone(), v.start))
            .unwrap_or_else(|| (self.pid.clone(), self.end));
        self.chronic_medications(&latest_wellness);
        self.social_history(&latest_wellness);
        self.screenings(&latest_wellness);
        self.preferences(&latest_wellness);
        self.care_plan_and_goals(&latest_wellness);
        for visit in &schedule {
            self.visit(visit);
        }
    }

    /// A fresh id in this patient's namespace: `{patient id}-{kind}{n}`.
    pub fn id(&mut self, kind: &str) -> String {
        self.counter += 1;
        format!("{}-{kind}{}", self.pid, self.counter)
    }

    pub fn subject(&self) -> Value {
        reference("Patient", &self.pid)
    }

    pub fn practitioner(&self, k: usize) -> Value {
        reference("Practitioner", &self.ids.practitioner(k))
    }

    pub fn service_org(&self) -> Value {
        reference("Organization", SERVICE_ORGANIZATION_ID)
    }

    pub fn age_years_at(&self, at: Moment) -> i64 {
        (at.date().to_days() - self.birth.to_days()) / 365
    }

    pub fn age_years(&self) -> i64 {
        self.age_years_at(self.end)
    }

    pub fn has_chronic(&self, code: &ConditionCode) -> bool {
        self.chronic
            .iter()
            .any(|c| c.code.snomed.code == code.snomed.code)
    }

    pub fn chronic_id(&self, code: &ConditionCode) -> Option<String> {
        self.chronic
            .iter()
            .find(|c| c.code.snomed.code == code.snomed.code)
            .map(|c| c.id.clone())
    }

    /// Sends a resource without a Provenance (Medication, Binary: not clinical statements).
    pub fn emit_plain(&mut self, resource: Map<String, Value>) {
        (self.sink)(Value::Object(resource));
    }

    /// Sends a clinical resource followed by its Provenance: authored by `author` (a practitioner
    /// index) on behalf of the service organization, which is also the transmitter.
    pub fn emit(&mut self, resource: Map<String, Value>, recorded: Moment, author: usize) {
        let resource_type = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let id = resource
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        (self.sink)(Value::Object(resource));
        let mut prov = super::datatypes::resource(
            "Provenance",
            &format!("{id}-prov"),
            Some("us-core-provenance"),
        );
        set(&mut prov, "target", js!([reference(&resource_type, &id)]));
        set(&mut prov, "recorded", js!(recorded.iso()));
        set(
            &mut prov,
            "agent",
            js!([
                {
                    "type": simple_concept("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "author", "Author"),
                    "who": self.practitioner(author),
                    "onBehalfOf": self.service_org(),
                },
                {
                    "type": simple_concept("http://hl7.org/fhir/us/core/CodeSystem/us-core-provenance-participant-type", "transmitter", "Transmitter"),
                    "who": self.service_org(),
                }
            ]),
        );
        (self.sink)(Value::Object(prov));
    }

    fn patient(&mut self) {
        let mut p = resource("Patient", &self.pid, Some("us-core-patient"));
        let race = self.rng.pick(codes::RACES);
        let hispanic = self.rng.chance(0.25);
        let mut extensions = vec![
            js!({
                "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
                "extension": [
                    {"url": "ombCategory", "valueCoding": super::datatypes::coding(&race.omb)},
                    {"url": "detailed", "valueCoding": super::datatypes::coding(&race.detailed)},
                    {"url": "text", "valueString": race.omb.display},
                ],
            }),
            if hispanic {
                let detailed = self.rng.pick(codes::HISPANIC_DETAILED);
                js!({
                    "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
                    "extension": [
                        {"url": "ombCategory", "valueCoding": super::datatypes::coding(&codes::HISPANIC)},
                        {"url": "detailed", "valueCoding": super::datatypes::coding(detailed)},
                        {"url": "text", "valueString": codes::HISPANIC.display},
                    ],
                })
            } else {
                js!({
                    "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
                    "extension": [
                        {"url": "ombCategory", "valueCoding": super::datatypes::coding(&codes::NOT_HISPANIC)},
                        {"url": "text", "valueString": codes::NOT_HISPANIC.display},
                    ],
                })
            },
        ];
        if race.omb.code == "1002-5" {
            extensions.push(js!({
                "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-tribal-affiliation",
                "extension": [
                    {"url": "tribalAffiliation", "valueCodeableConcept": super::datatypes::concept(&codes::TRIBE)},
                    {"url": "isEnrolled", "valueBoolean": true},
                ],
            }));
        }
        let (birth_sex, sex_code) = if self.female {
            ("F", "248152002")
        } else {
            ("M", "248153007")
        };
        extensions.push(js!({"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": birth_sex}));
        extensions.push(js!({"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-sex", "valueCode": sex_code}));
        let identity = if self.archetype == Archetype::YoungAdult {
            self.rng.pick(codes::GENDER_IDENTITY_VALUES)
        } else if self.female {
            &codes::GENDER_IDENTITY_VALUES[0]
        } else {
            &codes::GENDER_IDENTITY_VALUES[1]
        };
        if !matches!(self.archetype, Archetype::Infant | Archetype::Child) {
            extensions.push(js!({
                "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-genderIdentity",
                "valueCodeableConcept": super::datatypes::concept(identity),
            }));
        }
        set(&mut p, "extension", Value::Array(extensions));
        let mrn = format!("MRN{:07}", self.rng.below(10_000_000));
        set(
            &mut p,
            "identifier",
            js!([
                {
                    "use": "usual",
                    "type": simple_concept("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical Record Number"),
                    "system": "https://sphere-ehr.example/sid/mrn",
                    "value": mrn,
                    "assigner": self.service_org(),
                },
            ]),
        );
        set(&mut p, "active", js!(true));

        let adult = self.age_years() >= 18;
        let mut names = vec![];
        let mut official = js!({"use": "official", "family": self.family, "given": [self.given, *self.rng.pick(if self.female { codes::GIVEN_FEMALE } else { codes::GIVEN_MALE })]});
        if adult && !self.female && self.rng.chance(0.3) {
            official["suffix"] = js!(["Jr."]);
        } else if adult && self.rng.chance(0.2) {
            official["suffix"] = js!(["PhD"]);
        }
        if adult {
            // An earlier legal name (e.g. before marriage), closed when the current one began.
            // Changed half-way between the 18th birthday and now.
            let changed = self.birth.to_days() + 365 * (18 + (self.age_years() - 18) / 2);
            official["period"] = js!({"start": CalendarDate::from_days(changed).to_string()});
            names.push(official);
            names.push(js!({
                "use": "old",
                "family": *self.rng.pick(codes::FAMILY_NAMES),
                "given": [self.given],
                "period": {"start": self.birth.to_string(), "end": CalendarDate::from_days(changed - 1).to_string()},
            }));
        } else {
            names.push(official);
        }
        names.push(js!({"use": "usual", "given": [self.given]}));
        set(&mut p, "name", Value::Array(names));

        let phone = format!(
            "({}) 555-01{:02}",
            200 + self.rng.below(700),
            self.rng.below(100)
        );
        set(
            &mut p,
            "telecom",
            js!([
                {"system": "phone", "value": phone, "use": "home", "rank": 1},
                {"system": "phone", "value": format!("({}) 555-01{:02}", 200 + self.rng.below(700), self.rng.below(100)), "use": "mobile", "rank": 2},
                {"system": "email", "value": format!("{}.{}{}@example.com", self.given.to_lowercase(), self.family.to_lowercase(), self.rng.below(1000)), "use": "home"},
            ]),
        );
        set(
            &mut p,
            "gender",
            js!(if self.female { "female" } else { "male" }),
        );
        set(&mut p, "birthDate", js!(self.birth.to_string()));
        if let Some(died) = self.deceased {
            set(&mut p, "deceasedDateTime", js!(died.iso()));
        }
        let (city, state, zip) = *self.rng.pick(codes::CITIES);
        let (old_city, old_state, old_zip) = *self.rng.pick(codes::CITIES);
        let moved = CalendarDate::from_days(
            self.end.date().to_days()
                - self
                    .rng
                    .range(200, 3000)
                    .min(self.end.date().to_days() - self.birth.to_days()),
        );
        set(
            &mut p,
            "address",
            js!([
                {
                    "use": "home", "type": "both",
                    "line": [format!("{} {}", 10 + self.rng.below(9000), self.rng.pick(codes::STREETS))],
                    "city": city, "state": state, "postalCode": zip, "country": "US",
                    "period": {"start": moved.to_string()},
                },
                {
                    "use": "old",
                    "line": [format!("{} {}", 10 + self.rng.below(9000), self.rng.pick(codes::STREETS)), format!("Apt {}", 1 + self.rng.below(30))],
                    "city": old_city, "state": old_state, "postalCode": old_zip, "country": "US",
                    "period": {"start": self.birth.to_string(), "end": CalendarDate::from_days(moved.to_days() - 1).to_string()},
                },
            ]),
        );
        set(
            &mut p,
            "maritalStatus",
            if adult && self.rng.chance(0.5) {
                simple_concept(
                    "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                    "M",
                    "Married",
                )
            } else {
                simple_concept(
                    "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                    "S",
                    "Never Married",
                )
            },
        );
        let language = if self.rng.chance(0.75) {
            &codes::LANGUAGES[0]
        } else {
            self.rng.pick(&codes::LANGUAGES[1..])
        };
        set(
            &mut p,
            "communication",
            js!([{"language": super::datatypes::concept(language), "preferred": true}]),
        );
        set(
            &mut p,
            "generalPractitioner",
            js!([self.practitioner(self.pcp)]),
        );
        set(&mut p, "managingOrganization", self.service_org());
        let registered = Moment::at(
            self.birth
                .max(CalendarDate::from_days(self.end.date().to_days() - 5 * 365)),
            9,
            0,
        );
        self.emit(p, registered, self.pcp);
    }

    fn related_person(&mut self) {
        let child = matches!(self.archetype, Archetype::Infant | Archetype::Child);
        let (relationship, display, rel_female) = if child {
            ("MTH", "mother", true)
        } else if self.age_years() > 70 {
            ("DAU", "natural daughter", true)
        } else {
            ("SPS", "spouse", !self.female)
        };
        let given = if rel_female {
            *self.rng.pick(codes::GIVEN_FEMALE)
        } else {
            *self.rng.pick(codes::GIVEN_MALE)
        };
        let mut rp = resource(
            "RelatedPerson",
            &self.related_person.clone(),
            Some("us-core-relatedperson"),
        );
        set(&mut rp, "active", js!(true));
        set(&mut rp, "patient", self.subject());
        set(
            &mut rp,
            "relationship",
            js!([
                simple_concept(
                    "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                    relationship,
                    display
                ),
                simple_concept(
                    "http://terminology.hl7.org/CodeSystem/v2-0131",
                    "C",
                    "Emergency Contact"
                ),
            ]),
        );
        set(
            &mut rp,
            "name",
            js!([{"use": "official", "family": self.family, "given": [given]}]),
        );
        set(
            &mut rp,
            "telecom",
            js!([{"system": "phone", "value": format!("(617) 555-01{:02}", self.rng.below(100)), "use": "mobile"}]),
        );
        set(
            &mut rp,
            "gender",
            js!(if rel_female { "female" } else { "male" }),
        );
        set(
            &mut rp,
            "address",
            js!([{"use": "home", "line": [format!("{} {}", 10 + self.rng.below(9000), self.rng.pick(codes::STREETS))], "city": "Boston", "state": "MA", "postalCode": "02118", "country": "US"}]),
        );
        set(
            &mut rp,
            "communication",
            js!([{"language": super::datatypes::concept(&codes::LANGUAGES[0]), "preferred": true}]),
        );
        let recorded = Moment::at(
            CalendarDate::from_days(
                self.end.date().to_days()
                    - 400.min(self.end.date().to_days() - self.birth.to_days()),
            ),
            10,
            0,
        );
        self.emit(rp, recorded, self.pcp);
    }
}
