//! Observations: vital signs, laboratory results, social history, screening and assessment
//! results, preferences and clinical results, with the reports, specimens and questionnaire
//! responses they belong to.

use serde_json::{Map, Value};

use super::super::codes::{
    self, Analyte, Code, Panel, LOINC, OBS_CATEGORY, SNOMED, UCUM, US_CORE_CATEGORY,
};
use super::super::datatypes::{
    coding, concept, data_absent, quantity, reference, resource, set, simple_concept,
};
use super::super::rng::round;
use super::super::shared;
use super::super::time::Moment;
use super::care::NoteReport;
use super::visits::{Visit, VisitKind};
use super::{Archetype, Record};

fn category(code: &str, display: &str) -> Value {
    simple_concept(OBS_CATEGORY, code, display)
}

fn vital_category() -> Value {
    category("vital-signs", "Vital Signs")
}

fn loinc(code: &'static str, display: &'static str) -> Code {
    Code {
        system: LOINC,
        code,
        display,
    }
}

impl<S: FnMut(Value)> Record<'_, S> {
    /// The common head of every Observation; the caller adds the value and emits it.
    fn observation(
        &mut self,
        profile: &str,
        categories: Vec<Value>,
        code: Value,
        encounter: Option<&str>,
        effective: Moment,
    ) -> (String, Map<String, Value>) {
        let id = self.id("obs");
        let mut o = resource("Observation", &id, Some(profile));
        set(&mut o, "status", js!("final"));
        set(&mut o, "category", Value::Array(categories));
        set(&mut o, "code", code);
        set(&mut o, "subject", self.subject());
        if let Some(enc) = encounter {
            set(&mut o, "encounter", reference("Encounter", enc));
        }
        set(&mut o, "effectiveDateTime", js!(effective.iso()));
        (id, o)
    }

    fn vital(
        &mut self,
        visit: &Visit,
        profile: &str,
        code: Code,
        value: Option<Value>,
        hold: &mut Vec<String>,
    ) {
        let (id, mut o) = self.observation(
            profile,
            vec![vital_category()],
            concept(&code),
            Some(&visit.id),
            visit.start.plus_minutes(5),
        );
        match value {
            Some(v) => set(&mut o, "valueQuantity", v),
            None => set(
                &mut o,
                "dataAbsentReason",
                data_absent("not-performed", "Not Performed"),
            ),
        }
        self.emit(o, visit.start.plus_minutes(5), shared::NURSE_PRACTITIONER);
        hold.push(id);
    }

    /// A full set of vital signs for the patient's age, grouped by a vital-signs panel.
    pub(super) fn vital_signs(&mut self, visit: &Visit) {
        let age_days = visit.start.date().to_days() - self.birth.to_days();
        let age = age_days as f64 / 365.25;
        let scale = self.adult_height_cm / 170.0;
        let height = if age >= 18.0 {
            self.adult_height_cm
        } else {
            let growth = 50.0
                + 25.0 * age.min(1.0)
                + 12.0 * (age - 1.0).clamp(0.0, 1.0)
                + 6.0 * (age - 2.0).max(0.0);
            round((growth * scale).min(self.adult_height_cm), 1)
        };
        let bmi = if age >= 18.0 {
            self.adult_bmi
        } else if age < 2.0 {
            16.5
        } else {
            16.0 + age * 0.25
        };
        let bmi = round(bmi + self.rng.decimal(-0.6, 0.6, 1), 1);
        let weight = round(bmi * (height / 100.0) * (height / 100.0), 1);
        let mut members = Vec::new();
        let imperial = self.rng.chance(0.15);
        let height_q = if imperial {
            quantity(round(height / 2.54, 1), "in", "[in_i]")
        } else {
            quantity(height, "cm", "cm")
        };
        self.vital(
            visit,
            "us-core-body-height",
            loinc("8302-2", "Body height"),
            Some(height_q),
            &mut members,
        );
        let weight_q = if imperial {
            quantity(round(weight * 2.204_62, 1), "lb", "[lb_av]")
        } else {
            quantity(weight, "kg", "kg")
        };
        self.vital(
            visit,
            "us-core-body-weight",
            loinc("29463-7", "Body weight"),
            Some(weight_q),
            &mut members,
        );
        if age >= 2.0 {
            self.vital(
                visit,
                "us-core-bmi",
                loinc("39156-5", "Body mass index (BMI) [Ratio]"),
                Some(quantity(bmi, "kg/m2", "kg/m2")),
                &mut members,
            );
        }
        if (2.0..20.0).contains(&age) {
            let pct = self.rng.decimal(10.0, 90.0, 0);
            self.vital(
                visit,
                "pediatric-bmi-for-age",
                loinc(
                    "59576-9",
                    "Body mass index (BMI) [Percentile] Per age and sex",
                ),
                Some(quantity(pct, "%", "%")),
                &mut members,
            );
        }
        if age < 2.0 {
            let pct = self.rng.decimal(10.0, 90.0, 0);
            self.vital(
                visit,
                "pediatric-weight-for-height",
                loinc("77606-2", "Weight-for-length Per age and sex"),
                Some(quantity(pct, "%", "%")),
                &mut members,
            );
        }
        if age < 3.0 {
            let circumference = round(
                35.0 + 12.0 * (age / 2.0).min(1.0) + self.rng.decimal(-1.0, 1.0, 1),
                1,
            );
            self.vital(
                visit,
                "us-core-head-circumference",
                loinc("9843-4", "Head Occipital-frontal circumference"),
                Some(quantity(circumference, "cm", "cm")),
                &mut members,
            );
            let pct = self.rng.decimal(5.0, 95.0, 0);
            self.vital(
                visit,
                "head-occipital-frontal-circumference-percentile",
                loinc("8289-1", "Head Occipital-frontal circumference Percentile"),
                Some(quantity(pct, "%", "%")),
                &mut members,
            );
        }
        let fever = visit.kind == VisitKind::Symptom && self.rng.chance(0.4);
        let celsius = if fever {
            self.rng.decimal(37.9, 39.2, 1)
        } else {
            self.rng.decimal(36.4, 37.3, 1)
        };
        let temp = if self.rng.chance(0.2) {
            quantity(round(celsius * 9.0 / 5.0 + 32.0, 1), "degF", "[degF]")
        } else {
            quantity(celsius, "C", "Cel")
        };
        self.vital(
            visit,
            "us-core-body-temperature",
            loinc("8310-5", "Body temperature"),
            Some(temp),
            &mut members,
        );
        // The young adult's first visit records the heart rate as not performed (data-absent-reason).
        let hr = if self.archetype == Archetype::YoungAdult
            && visit.first_of_kind
            && visit.kind == VisitKind::Wellness
        {
            None
        } else {
            let (lo, hi) = if age < 1.0 {
                (100, 160)
            } else if age < 12.0 {
                (70, 120)
            } else {
                (58, 96)
            };
            Some(quantity(
                self.rng.range(lo, hi) as f64,
                "beats/minute",
                "/min",
            ))
        };
        self.vital(
            visit,
            "us-core-heart-rate",
            loinc("8867-4", "Heart rate"),
            hr,
            &mut members,
        );
        let (lo, hi) = if age < 1.0 {
            (30, 50)
        } else if age < 12.0 {
            (18, 30)
        } else {
            (12, 20)
        };
        let rr = quantity(self.rng.range(lo, hi) as f64, "breaths/minute", "/min");
        self.vital(
            visit,
            "us-core-respiratory-rate",
            loinc("9279-1", "Respiratory rate"),
            Some(rr),
            &mut members,
        );
        if age >= 3.0 {
            let hypertensive = self.has_chronic(&codes::HYPERTENSION);
            let systolic = if hypertensive {
                self.rng.range(128, 158)
            } else {
                self.rng.range(100, 128)
            } as f64;
            let diastolic = if hypertensive {
                self.rng.range(80, 98)
            } else {
                self.rng.range(62, 82)
            } as f64;
            // The reproductive-age archetype's first BP has no diastolic reading (component data-absent-reason).
            let absent = self.archetype == Archetype::ReproductiveWoman
                && visit.first_of_kind
                && visit.kind == VisitKind::Wellness;
            let (id, mut o) = self.observation(
                "us-core-blood-pressure",
                vec![vital_category()],
                concept(&loinc(
                    "85354-9",
                    "Blood pressure panel with all children optional",
                )),
                Some(&visit.id),
                visit.start.plus_minutes(6),
            );
            let diastolic_component = if absent {
                js!({"code": concept(&loinc("8462-4", "Diastolic blood pressure")), "dataAbsentReason": data_absent("unknown", "Unknown")})
            } else {
                js!({"code": concept(&loinc("8462-4", "Diastolic blood pressure")), "valueQuantity": quantity(diastolic, "mmHg", "mm[Hg]")})
            };
            set(
                &mut o,
                "component",
                js!([
                    {"code": concept(&loinc("8480-6", "Systolic blood pressure")), "valueQuantity": quantity(systolic, "mmHg", "mm[Hg]")},
                    diastolic_component,
                ]),
            );
            self.emit(o, visit.start.plus_minutes(6), shared::NURSE_PRACTITIONER);
            members.push(id);
        }
        let spo2 = self.rng.range(93, 99) as f64;
        let (id, mut o) = self.observation(
            "us-core-pulse-oximetry",
            vec![vital_category()],
            js!({"coding": [
                coding(&loinc("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry")),
                coding(&loinc("2708-6", "Oxygen saturation in Arterial blood")),
            ], "text": "Oxygen saturation"}),
            Some(&visit.id),
            visit.start.plus_minutes(7),
        );
        set(&mut o, "valueQuantity", quantity(spo2, "%", "%"));
        if visit.kind == VisitKind::Inpatient {
            // On supplemental oxygen in hospital: flow rate and concentration components.
            set(
                &mut o,
                "component",
                js!([
                    {"code": concept(&loinc("3151-8", "Inhaled oxygen flow rate")), "valueQuantity": quantity(self.rng.range(1, 4) as f64, "L/min", "L/min")},
                    {"code": concept(&loinc("3150-0", "Inhaled oxygen concentration")), "valueQuantity": quantity(self.rng.range(24, 36) as f64, "%", "%")},
                ]),
            );
        }
        self.emit(o, visit.start.plus_minutes(7), shared::NURSE_PRACTITIONER);
        members.push(id);

        let (_, mut panel) = self.observation(
            "us-core-vital-signs",
            vec![vital_category()],
            concept(&loinc(
                "85353-1",
                "Vital signs, weight, height, head circumference, oxygen saturation and BMI panel",
            )),
            Some(&visit.id),
            visit.start.plus_minutes(8),
        );
        set(
            &mut panel,
            "hasMember",
            Value::Array(
                members
                    .iter()
                    .map(|m| reference("Observation", m))
                    .collect(),
            ),
        );
        self.emit(
            panel,
            visit.start.plus_minutes(8),
            shared::NURSE_PRACTITIONER,
        );
    }

    /// Average blood pressure over two weeks of home readings (hypertension only).
    fn average_blood_pressure(&mut self, encounter: &str, at: Moment) {
        let (_, mut o) = self.observation(
            "us-core-vital-signs",
            vec![vital_category()],
            concept(&loinc(
                "96607-7",
                "Blood pressure panel mean systolic and mean diastolic",
            )),
            Some(encounter),
            at,
        );
        // effectiveDateTime (the end of the averaging window) rather than a Period: validators that
        // evaluate vs-1 strictly reject a Period there, so the window is stated in a note.
        set(
            &mut o,
            "note",
            js!([{"text": format!("Mean of home readings from {} to {}.", at.plus_days(-14).day_string(), at.day_string())}]),
        );
        set(
            &mut o,
            "component",
            js!([
                {"code": concept(&loinc("96608-5", "Systolic blood pressure mean")), "valueQuantity": quantity(self.rng.range(128, 150) as f64, "mmHg", "mm[Hg]")},
                {"code": concept(&loinc("96609-3", "Diastolic blood pressure mean")), "valueQuantity": quantity(self.rng.range(80, 94) as f64, "mmHg", "mm[Hg]")},
            ]),
        );
        self.emit(o, at, self.pcp);
    }

    /// Specimen, results and the lab DiagnosticReport for the panels due at this visit.
    pub(super) fn lab_panels(&mut self, visit: &Visit) {
        let mut panels: Vec<&Panel> = vec![&codes::CBC, &codes::BMP];
        if self.has_chronic(&codes::HYPERLIPIDEMIA) || self.has_chronic(&codes::DIABETES_T2) {
            panels.push(&codes::LIPIDS);
        }
        let diabetic = self.has_chronic(&codes::DIABETES_T2);
        for panel in panels {
            let absent = self.archetype == Archetype::DiabeticAdult
                && visit.first_of_kind
                && panel.loinc.code == codes::BMP.loinc.code;
            self.lab_report(visit, &panel.loinc, panel.analytes, &panel.specimen, absent);
        }
        if diabetic {
            self.lab_report(
                visit,
                &codes::HBA1C.loinc,
                &[codes::HBA1C],
                &codes::BLOOD,
                false,
            );
        }
    }

    fn specimen(&mut self, visit: &Visit, kind: &Code) -> String {
        let id = self.id("spec");
        let mut s = resource("Specimen", &id, Some("us-core-specimen"));
        set(
            &mut s,
            "identifier",
            js!([{"system": "https://sphere-ehr.example/sid/specimen", "value": id.to_uppercase()}]),
        );
        set(
            &mut s,
            "accessionIdentifier",
            js!({"system": "https://sphere-ehr.example/sid/accession", "value": format!("A{}", self.rng.below(100_000_000))}),
        );
        set(&mut s, "status", js!("available"));
        set(&mut s, "type", concept(kind));
        set(&mut s, "subject", self.subject());
        set(
            &mut s,
            "receivedTime",
            js!(visit.start.plus_minutes(40).iso()),
        );
        set(
            &mut s,
            "collection",
            js!({"collector": self.practitioner(shared::NURSE_PRACTITIONER), "collectedDateTime": visit.start.plus_minutes(20).iso()}),
        );
        self.emit(s, visit.start.plus_minutes(20), shared::NURSE_PRACTITIONER);
        id
    }

    fn lab_order(&mut self, visit: &Visit, code: &Code) -> String {
        let id = self.id("sr");
        let mut s = resource("ServiceRequest", &id, Some("us-core-servicerequest"));
        set(&mut s, "status", js!("completed"));
        set(&mut s, "intent", js!("order"));
        set(
            &mut s,
            "category",
            js!([simple_concept(SNOMED, "108252007", "Laboratory procedure")]),
        );
        set(&mut s, "code", concept(code));
        set(&mut s, "subject", self.subject());
        set(&mut s, "encounter", reference("Encounter", &visit.id));
        set(
            &mut s,
            "occurrenceDateTime",
            js!(visit.start.plus_minutes(20).iso()),
        );
        set(
            &mut s,
            "authoredOn",
            js!(visit.start.plus_minutes(10).iso()),
        );
        set(&mut s, "requester", self.practitioner(self.pcp));
        if let Some(first) = self.chronic.first() {
            set(
                &mut s,
                "reasonReference",
                js!([reference("Condition", &first.id)]),
            );
        }
        self.emit(s, visit.start.plus_minutes(10), self.pcp);
        id
    }

    fn lab_result(
        &mut self,
        visit: &Visit,
        specimen: &str,
        code: &Code,
        issued: Moment,
    ) -> (String, Map<String, Value>) {
        let (id, mut o) = self.observation(
            "us-core-observation-lab",
            vec![category("laboratory", "Laboratory")],
            concept(code),
            Some(&visit.id),
            visit.start.plus_minutes(20),
        );
        set(&mut o, "issued", js!(issued.iso()));
        set(
            &mut o,
            "performer",
            js!([reference("Organization", &self.ids.lab())]),
        );
        set(&mut o, "specimen", reference("Specimen", specimen));
        (id, o)
    }

    fn lab_report(
        &mut self,
        visit: &Visit,
        panel: &Code,
        analytes: &[Analyte],
        specimen_type: &Code,
        absent: bool,
    ) {
        let order = self.lab_order(visit, panel);
        let specimen = self.specimen(visit, specimen_type);
        let issued = visit.start.plus_minutes(240);
        let diabetic = self.has_chronic(&codes::DIABETES_T2);
        let mut results = Vec::new();
        for analyte in analytes {
            let (id, mut o) = self.lab_result(visit, &specimen, &analyte.loinc, issued);
            if absent && analyte.loinc.code == "2823-3" {
                set(&mut o, "dataAbsentReason", data_absent("error", "Error"));
                set(
                    &mut o,
                    "note",
                    js!([{"text": "Specimen hemolyzed; potassium not reported."}]),
                );
            } else {
                let span = analyte.high - analyte.low;
                let mut value = self.rng.decimal(
                    analyte.low - span * 0.1,
                    analyte.high + span * 0.1,
                    analyte.decimals,
                );
                if diabetic && (analyte.loinc.code == "2345-7" || analyte.loinc.code == "4548-4") {
                    value = round(
                        analyte.high * self.rng.decimal(1.2, 1.6, 2),
                        analyte.decimals,
                    );
                }
                set(
                    &mut o,
                    "valueQuantity",
                    quantity(value, analyte.unit, analyte.unit),
                );
                let (code, display) = if value > analyte.high {
                    ("H", "High")
                } else if value < analyte.low {
                    ("L", "Low")
                } else {
                    ("N", "Normal")
                };
                set(
                    &mut o,
                    "interpretation",
                    js!([simple_concept(
                        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        code,
                        display
                    )]),
                );
                set(
                    &mut o,
                    "referenceRange",
                    js!([{"low": quantity(analyte.low, analyte.unit, analyte.unit), "high": quantity(analyte.high, analyte.unit, analyte.unit)}]),
                );
            }
            self.emit(o, issued, self.pcp);
            results.push(id);
        }
        self.lab_diagnostic_report(visit, panel, &order, &specimen, &results, issued);
    }

    fn lab_diagnostic_report(
        &mut self,
        visit: &Visit,
        code: &Code,
        order: &str,
        specimen: &str,
        results: &[String],
        issued: Moment,
    ) {
        let id = self.id("dr");
        let mut r = resource(
            "DiagnosticReport",
            &id,
            Some("us-core-diagnosticreport-lab"),
        );
        set(&mut r, "basedOn", js!([reference("ServiceRequest", order)]));
        set(&mut r, "status", js!("final"));
        set(
            &mut r,
            "category",
            js!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB", "display": "Laboratory"}], "text": "Laboratory"}]),
        );
        set(&mut r, "code", concept(code));
        set(&mut r, "subject", self.subject());
        set(&mut r, "encounter", reference("Encounter", &visit.id));
        set(
            &mut r,
            "effectiveDateTime",
            js!(visit.start.plus_minutes(20).iso()),
        );
        set(&mut r, "issued", js!(issued.iso()));
        set(
            &mut r,
            "performer",
            js!([
                self.practitioner(self.pcp),
                reference("Organization", &self.ids.lab())
            ]),
        );
        set(
            &mut r,
            "resultsInterpreter",
            js!([self.practitioner(self.pcp)]),
        );
        set(&mut r, "specimen", js!([reference("Specimen", specimen)]));
        set(
            &mut r,
            "result",
            Value::Array(
                results
                    .iter()
                    .map(|o| reference("Observation", o))
                    .collect(),
            ),
        );
        self.emit(r, issued, self.pcp);
    }

    pub(super) fn urinalysis(&mut self, visit: &Visit) {
        let order = self.lab_order(visit, &codes::URINALYSIS);
        let specimen = self.specimen(visit, &codes::URINE);
        let issued = visit.start.plus_minutes(90);
        let (id, mut o) = self.lab_result(visit, &specimen, &codes::URINE_COLOR, issued);
        set(
            &mut o,
            "valueString",
            js!(*self.rng.pick(&["Yellow", "Dark yellow", "Straw"])),
        );
        self.emit(o, issued, self.pcp);
        self.lab_diagnostic_report(visit, &codes::URINALYSIS, &order, &specimen, &[id], issued);
    }

    pub(super) fn covid_test(&mut self, visit: &Visit) {
        let order = self.lab_order(visit, &codes::SARS_COV_2);
        let specimen = self.specimen(visit, &codes::NP_SWAB);
        let issued = visit.start.plus_minutes(100);
        let (id, mut o) = self.lab_result(visit, &specimen, &codes::SARS_COV_2, issued);
        let result = if self.rng.chance(0.15) {
            codes::POSITIVE
        } else {
            codes::NEGATIVE
        };
        set(&mut o, "valueCodeableConcept", concept(&result));
        self.emit(o, issued, self.pcp);
        self.lab_diagnostic_report(visit, &codes::SARS_COV_2, &order, &specimen, &[id], issued);
    }

    /// A chest X-ray: imaging order, findings and impression (clinical results), radiology report.
    pub(super) fn chest_xray(&mut self, visit: &Visit) {
        let order = self.id("sr");
        let mut s = resource("ServiceRequest", &order, Some("us-core-servicerequest"));
        set(&mut s, "status", js!("completed"));
        set(&mut s, "intent", js!("original-order"));
        set(
            &mut s,
            "category",
            js!([simple_concept(SNOMED, "363679005", "Imaging")]),
        );
        set(&mut s, "code", concept(&codes::CHEST_XRAY));
        set(&mut s, "subject", self.subject());
        set(&mut s, "encounter", reference("Encounter", &visit.id));
        set(
            &mut s,
            "occurrenceDateTime",
            js!(visit.start.plus_minutes(30).iso()),
        );
        set(
            &mut s,
            "authoredOn",
            js!(visit.start.plus_minutes(15).iso()),
        );
        set(&mut s, "requester", self.practitioner(self.pcp));
        set(&mut s, "reasonCode", js!([{"text": "Rule out pneumonia"}]));
        self.emit(s, visit.start.plus_minutes(15), self.pcp);

        let at = visit.start.plus_minutes(45);
        let normal = visit.kind != VisitKind::Inpatient;
        let (finding, mut o) = self.observation(
            "us-core-observation-clinical-result",
            vec![category("imaging", "Imaging")],
            concept(&loinc("18782-3", "Radiology Study observation (narrative)")),
            Some(&visit.id),
            at,
        );
        let value = if normal {
            Code {
                system: SNOMED,
                code: "17621005",
                display: "Normal (qualifier value)",
            }
        } else {
            Code {
                system: SNOMED,
                code: "263654008",
                display: "Abnormal (qualifier value)",
            }
        };
        set(&mut o, "valueCodeableConcept", concept(&value));
        self.emit(o, at, self.pcp);
        let (impression, mut o) = self.observation(
            "us-core-observation-clinical-result",
            vec![category("imaging", "Imaging")],
            concept(&codes::XR_IMPRESSION),
            Some(&visit.id),
            at,
        );
        let text = if normal {
            "No acute cardiopulmonary abnormality."
        } else {
            "Right lower lobe consolidation consistent with pneumonia."
        };
        set(&mut o, "valueString", js!(text));
        self.emit(o, at, self.pcp);
        let report = format!(
            "Portable chest X-ray.\nFindings: {}\nImpression: {}\n",
            if normal {
                "Lungs clear."
            } else {
                "Right lower lobe opacity."
            },
            text
        );
        self.note_report(
            visit,
            NoteReport {
                category: &codes::RADIOLOGY,
                code: &codes::CHEST_XRAY,
                results: &[finding, impression],
                text: &report,
                performer: self.pcp,
                media: None,
            },
        );
    }

    /// EKG before a pacemaker: interval and impression (clinical-test results) and a cardiology report.
    pub(super) fn ekg_report(&mut self, visit: &Visit) {
        let at = visit.start.plus_minutes(30);
        let categories = || {
            vec![
                category("procedure", "Procedure"),
                simple_concept(
                    "http://hl7.org/fhir/us/core/CodeSystem/us-core-observation-category",
                    "clinical-test",
                    "Clinical Test",
                ),
            ]
        };
        let (interval, mut o) = self.observation(
            "us-core-observation-clinical-result",
            categories(),
            concept(&loinc("8625-6", "P-R Interval")),
            Some(&visit.id),
            at,
        );
        set(
            &mut o,
            "valueQuantity",
            quantity(self.rng.range(190, 260) as f64, "ms", "ms"),
        );
        self.emit(o, at, shared::CARDIOLOGY);
        let (impression, mut o) = self.observation(
            "us-core-observation-clinical-result",
            categories(),
            concept(&codes::EKG_IMPRESSION),
            Some(&visit.id),
            at,
        );
        set(
            &mut o,
            "valueString",
            js!("Sinus bradycardia with intermittent sinus pauses"),
        );
        self.emit(o, at, shared::CARDIOLOGY);
        let tracing = self.media(visit, "12-lead EKG tracing", shared::CARDIOLOGY);
        self.note_report(
            visit,
            NoteReport {
                category: &codes::CARDIOLOGY,
                code: &codes::EKG_PANEL,
                results: &[interval, impression],
                text: "12-lead EKG.\nSinus bradycardia with intermittent sinus pauses; PR interval prolonged.\n",
                performer: shared::CARDIOLOGY,
                media: Some(&tracing),
            },
        );
    }

    pub(super) fn pathology_report(&mut self, visit: &Visit) {
        let text = "Colon, sigmoid, polypectomy: tubular adenoma, 4 mm. Negative for high-grade dysplasia.\n";
        self.note_report(
            visit,
            NoteReport {
                category: &codes::PATHOLOGY,
                code: &codes::PATHOLOGY_REPORT,
                results: &[],
                text,
                performer: self.pcp,
                media: None,
            },
        );
    }

    /// Smoking, sexual orientation, occupation, pregnancy status and intent.
    pub(super) fn social_history(&mut self, (encounter, at): &(String, Moment)) {
        let age = self.age_years_at(*at);
        let social = || vec![category("social-history", "Social History")];
        if age >= 12 {
            let value = if age < 18 {
                codes::SMOKING_VALUES[0]
            } else {
                *self.rng.pick(codes::SMOKING_VALUES)
            };
            let (_, mut o) = self.observation(
                "us-core-smokingstatus",
                social(),
                concept(&codes::SMOKING_STATUS),
                Some(encounter),
                *at,
            );
            set(&mut o, "issued", js!(at.iso()));
            set(&mut o, "valueCodeableConcept", concept(&value));
            self.emit(o, *at, self.pcp);
        }
        if age >= 15 {
            let value = *self.rng.pick(codes::SEXUAL_ORIENTATION_VALUES);
            let (_, mut o) = self.observation(
                "us-core-observation-sexual-orientation",
                social(),
                concept(&codes::SEXUAL_ORIENTATION),
                Some(encounter),
                *at,
            );
            set(&mut o, "valueCodeableConcept", concept(&value));
            self.emit(o, *at, self.pcp);
        }
        if age >= 16 {
            let (occupation, industry) = codes::OCCUPATIONS[0];
            let (_, mut o) = self.observation(
                "us-core-observation-occupation",
                social(),
                concept(&codes::OCCUPATION),
                Some(encounter),
                *at,
            );
            o.remove("effectiveDateTime");
            set(
                &mut o,
                "effectivePeriod",
                js!({"start": at.plus_days(-365 * (age - 15).min(10)).day_string()}),
            );
            set(&mut o, "valueCodeableConcept", concept(&occupation));
            set(
                &mut o,
                "component",
                js!([{"code": concept(&codes::INDUSTRY), "valueCodeableConcept": concept(&industry)}]),
            );
            self.emit(o, *at, self.pcp);
        }
        if self.female && (15..=50).contains(&age) {
            let status = if self.archetype == Archetype::ReproductiveWoman {
                *self.rng.pick(codes::PREGNANCY_STATUS_VALUES)
            } else {
                codes::PREGNANCY_STATUS_VALUES[0]
            };
            let (_, mut o) = self.observation(
                "us-core-observation-pregnancystatus",
                social(),
                concept(&codes::PREGNANCY_STATUS),
                Some(encounter),
                *at,
            );
            set(&mut o, "valueCodeableConcept", concept(&status));
            self.emit(o, *at, self.pcp);
            let intent = *self.rng.pick(codes::PREGNANCY_INTENT_VALUES);
            let (_, mut o) = self.observation(
                "us-core-observation-pregnancyintent",
                social(),
                concept(&codes::PREGNANCY_INTENT),
                Some(encounter),
                *at,
            );
            set(&mut o, "valueCodeableConcept", concept(&intent));
            self.emit(o, *at, self.pcp);
        }
        if self.has_chronic(&codes::HYPERTENSION) {
            self.average_blood_pressure(encounter, *at);
        }
    }

    /// Hunger Vital Sign (SDOH) and PHQ-2 (depression): questionnaire responses, item and panel
    /// observations, and the assessments derived from them.
    pub(super) fn screenings(&mut self, (encounter, at): &(String, Moment)) {
        let food_insecure = self.archetype == Archetype::MidlifeWoman;
        let survey_sdoh = || {
            vec![
                simple_concept(US_CORE_CATEGORY, "sdoh", "SDOH"),
                category("survey", "Survey"),
            ]
        };
        let a1 = if food_insecure {
            codes::OFTEN_TRUE
        } else {
            codes::NEVER_TRUE
        };
        let a2 = if food_insecure {
            codes::SOMETIMES_TRUE
        } else {
            codes::NEVER_TRUE
        };
        let risk = if food_insecure {
            codes::AT_RISK
        } else {
            codes::NO_RISK
        };
        let qr = self.questionnaire_response(
            *at,
            "http://loinc.org/q/88121-9",
            "Hunger Vital Sign",
            js!([{
                "linkId": "/88121-9",
                "text": codes::HVS_PANEL.display,
                "item": [
                    {"linkId": "/88121-9/88122-7", "text": codes::HVS_WORRIED.display, "answer": [{"valueCoding": coding(&a1)}]},
                    {"linkId": "/88121-9/88123-5", "text": codes::HVS_DIDNT_LAST.display, "answer": [{"valueCoding": coding(&a2)}]},
                    {"linkId": "/88121-9/88124-3", "text": codes::HVS_RISK.display, "answer": [{"valueCoding": coding(&risk)}]},
                ],
            }, {
                "linkId": "/comments",
                "text": "Anything else you would like us to know?",
                "answer": [{"valueString": if food_insecure { "Food runs out at the end of the month." } else { "No concerns." }}],
            }]),
        );
        let mut members = Vec::new();
        for (code, answer) in [
            (codes::HVS_WORRIED, a1),
            (codes::HVS_DIDNT_LAST, a2),
            (codes::HVS_RISK, risk),
        ] {
            let (id, mut o) = self.observation(
                "us-core-observation-screening-assessment",
                survey_sdoh(),
                concept(&code),
                Some(encounter),
                *at,
            );
            set(&mut o, "performer", js!([self.subject()]));
            set(&mut o, "valueCodeableConcept", concept(&answer));
            set(
                &mut o,
                "derivedFrom",
                js!([reference("QuestionnaireResponse", &qr)]),
            );
            self.emit(o, *at, self.pcp);
            members.push(id);
        }
        let (hvs_panel, mut o) = self.observation(
            "us-core-observation-screening-assessment",
            survey_sdoh(),
            concept(&codes::HVS_PANEL),
            Some(encounter),
            *at,
        );
        set(&mut o, "performer", js!([self.subject()]));
        set(
            &mut o,
            "hasMember",
            Value::Array(
                members
                    .iter()
                    .map(|m| reference("Observation", m))
                    .collect(),
            ),
        );
        set(
            &mut o,
            "derivedFrom",
            js!([reference("QuestionnaireResponse", &qr)]),
        );
        self.emit(o, *at, self.pcp);
        let (_, mut o) = self.observation(
            "us-core-observation-screening-assessment",
            survey_sdoh(),
            concept(&loinc("29762-2", "Social history Narrative")),
            Some(encounter),
            *at,
        );
        set(&mut o, "performer", js!([self.practitioner(self.pcp)]));
        set(
            &mut o,
            "valueString",
            js!(if food_insecure {
                "Reports running out of food; referred to food pantry program."
            } else {
                "No social needs identified."
            }),
        );
        set(
            &mut o,
            "derivedFrom",
            js!([reference("Observation", &hvs_panel)]),
        );
        self.emit(o, *at, self.pcp);
        if food_insecure {
            self.food_pantry_referral(*at);
        }

        if self.age_years_at(*at) >= 12 {
            let depressed = self.has_chronic(&codes::DEPRESSION);
            let s1 = if depressed {
                2
            } else {
                self.rng.below(2) as usize
            };
            let s2 = if depressed { 3 } else { 0 };
            let total = (s1 + s2) as f64;
            let qr = self.questionnaire_response(
                *at,
                "http://loinc.org/q/55757-9",
                "PHQ-2",
                js!([
                    {"linkId": "/44250-9", "text": codes::PHQ2_INTEREST.display, "answer": [{"valueCoding": coding(&codes::PHQ_ANSWERS[s1])}]},
                    {"linkId": "/44255-8", "text": codes::PHQ2_DOWN.display, "answer": [{
                        "valueCoding": coding(&codes::PHQ_ANSWERS[s2]),
                        "item": [{"linkId": "/44255-8/duration", "text": "For how long?", "answer": [{"valueString": if depressed { "Most of the last month" } else { "Not applicable" }}]}],
                    }]},
                    {"linkId": "/55758-7", "text": codes::PHQ2_TOTAL.display, "answer": [{"valueDecimal": total}]},
                ]),
            );
            let survey = || {
                vec![
                    category("survey", "Survey"),
                    simple_concept(US_CORE_CATEGORY, "cognitive-status", "Cognitive Status"),
                ]
            };
            let mut members = Vec::new();
            for (code, score) in [(codes::PHQ2_INTEREST, s1), (codes::PHQ2_DOWN, s2)] {
                let (id, mut o) = self.observation(
                    "us-core-observation-screening-assessment",
                    survey(),
                    concept(&code),
                    Some(encounter),
                    *at,
                );
                set(&mut o, "performer", js!([self.subject()]));
                set(
                    &mut o,
                    "valueCodeableConcept",
                    concept(&codes::PHQ_ANSWERS[score]),
                );
                set(
                    &mut o,
                    "derivedFrom",
                    js!([reference("QuestionnaireResponse", &qr)]),
                );
                self.emit(o, *at, self.pcp);
                members.push(id);
            }
            let (total_id, mut o) = self.observation(
                "us-core-observation-screening-assessment",
                survey(),
                concept(&codes::PHQ2_TOTAL),
                Some(encounter),
                *at,
            );
            set(&mut o, "performer", js!([self.subject()]));
            set(
                &mut o,
                "valueQuantity",
                js!({"value": total, "unit": "{score}", "system": UCUM, "code": "{score}"}),
            );
            set(
                &mut o,
                "derivedFrom",
                js!([reference("QuestionnaireResponse", &qr)]),
            );
            self.emit(o, *at, self.pcp);
            members.push(total_id);
            let (panel, mut o) = self.observation(
                "us-core-observation-screening-assessment",
                survey(),
                concept(&codes::PHQ2_PANEL),
                Some(encounter),
                *at,
            );
            set(&mut o, "performer", js!([self.subject()]));
            set(
                &mut o,
                "hasMember",
                Value::Array(
                    members
                        .iter()
                        .map(|m| reference("Observation", m))
                        .collect(),
                ),
            );
            set(
                &mut o,
                "derivedFrom",
                js!([reference("QuestionnaireResponse", &qr)]),
            );
            self.emit(o, *at, self.pcp);
            // A disability-status assessment derived from the screening (simple observation).
            let severity = if depressed {
                ("LA6751-7", "Moderate")
            } else {
                ("LA6752-5", "Mild")
            };
            let (_, mut o) = self.observation(
                "us-core-simple-observation",
                vec![simple_concept(
                    US_CORE_CATEGORY,
                    "disability-status",
                    "Disability Status",
                )],
                concept(&codes::DEPRESSION_SEVERITY),
                Some(encounter),
                *at,
            );
            set(&mut o, "performer", js!([self.practitioner(self.pcp)]));
            set(
                &mut o,
                "valueCodeableConcept",
                concept(&loinc(severity.0, severity.1)),
            );
            set(
                &mut o,
                "derivedFrom",
                js!([reference("Observation", &panel)]),
            );
            self.emit(o, *at, self.pcp);
        }
        if self.age_years_at(*at) >= 18 {
            let (_, mut o) = self.observation(
                "us-core-simple-observation",
                vec![simple_concept(US_CORE_CATEGORY, "sdoh", "SDOH")],
                concept(&codes::TRANSPORT_TOO_EXPENSIVE),
                Some(encounter),
                *at,
            );
            set(&mut o, "performer", js!([self.subject()]));
            set(&mut o, "valueBoolean", js!(food_insecure));
            self.emit(o, *at, self.pcp);
        }
        if self.age_years_at(*at) >= 60 {
            let (_, mut o) = self.observation(
                "us-core-simple-observation",
                vec![simple_concept(
                    US_CORE_CATEGORY,
                    "cognitive-status",
                    "Cognitive Status",
                )],
                concept(&loinc("72133-2", "Montreal Cognitive Assessment [MoCA]")),
                Some(encounter),
                *at,
            );
            set(&mut o, "performer", js!([self.practitioner(self.pcp)]));
            set(
                &mut o,
                "valueQuantity",
                js!({"value": self.rng.range(22, 30), "unit": "{score}", "system": UCUM, "code": "{score}"}),
            );
            self.emit(o, *at, self.pcp);
        }
    }

    /// Treatment intervention and care experience preferences (adults).
    pub(super) fn preferences(&mut self, (encounter, at): &(String, Moment)) {
        if self.age_years_at(*at) < 18 {
            return;
        }
        let (_, mut o) = self.observation(
            "us-core-simple-observation",
            vec![category("survey", "Survey")],
            concept(&codes::TREATMENT_PREFERENCE),
            Some(encounter),
            *at,
        );
        set(&mut o, "performer", js!([self.subject()]));
        set(
            &mut o,
            "valueString",
            js!(*self.rng.pick(&[
                "I want to stay at home as long as possible, with hospice care if needed.",
                "Try every treatment that could extend my life.",
                "Avoid mechanical ventilation; comfort-focused care is preferred.",
            ])),
        );
        self.emit(o, *at, self.pcp);
        let (_, mut o) = self.observation(
            "us-core-simple-observation",
            vec![category("survey", "Survey")],
            concept(&codes::CARE_EXPERIENCE_PREFERENCE),
            Some(encounter),
            *at,
        );
        set(&mut o, "performer", js!([self.subject()]));
        set(
            &mut o,
            "valueString",
            js!(*self.rng.pick(&[
                "Prefers a female clinician and morning appointments.",
                "Wants a family member present for care decisions.",
                "Prefers written instructions in plain language.",
            ])),
        );
        self.emit(o, *at, self.pcp);
    }

    /// Emits a completed QuestionnaireResponse authored by the PCP; returns its id.
    fn questionnaire_response(
        &mut self,
        at: Moment,
        questionnaire: &str,
        title: &str,
        items: Value,
    ) -> String {
        let id = self.id("qr");
        let mut q = resource(
            "QuestionnaireResponse",
            &id,
            Some("us-core-questionnaireresponse"),
        );
        set(
            &mut q,
            "identifier",
            js!({"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", self.uuid())}),
        );
        set(&mut q, "questionnaire", js!(questionnaire));
        set(
            &mut q,
            "_questionnaire",
            js!({"extension": [
                {"url": "http://hl7.org/fhir/StructureDefinition/display", "valueString": title},
                {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-extension-questionnaire-uri", "valueUri": questionnaire},
            ]}),
        );
        set(&mut q, "status", js!("completed"));
        set(&mut q, "subject", self.subject());
        set(&mut q, "authored", js!(at.iso()));
        set(&mut q, "author", self.practitioner(self.pcp));
        set(&mut q, "source", self.subject());
        set(&mut q, "item", items);
        self.emit(q, at, self.pcp);
        id
    }

    fn food_pantry_referral(&mut self, at: Moment) {
        let id = self.id("sr");
        let mut s = resource("ServiceRequest", &id, Some("us-core-servicerequest"));
        set(&mut s, "status", js!("active"));
        set(&mut s, "intent", js!("order"));
        set(
            &mut s,
            "category",
            js!([simple_concept(US_CORE_CATEGORY, "sdoh", "SDOH")]),
        );
        set(&mut s, "code", concept(&codes::FOOD_PANTRY_REFERRAL));
        set(&mut s, "subject", self.subject());
        set(
            &mut s,
            "occurrencePeriod",
            js!({"start": at.day_string(), "end": at.plus_days(60).day_string()}),
        );
        set(&mut s, "authoredOn", js!(at.iso()));
        set(&mut s, "requester", self.practitioner(self.pcp));
        set(
            &mut s,
            "reasonCode",
            js!([concept(&codes::SDOH_CONDITIONS[0].snomed)]),
        );
        if let Some(condition) = self.chronic_id(&codes::SDOH_CONDITIONS[0]) {
            set(
                &mut s,
                "reasonReference",
                js!([reference("Condition", &condition)]),
            );
        }
        self.emit(s, at, self.pcp);
    }
}
