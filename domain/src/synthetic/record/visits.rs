//! The encounter timeline and what happens at each kind of visit.

use serde_json::Value;

use super::super::codes::{self, Code, ConditionCode};
use super::super::datatypes::{concept, reference, resource, set, simple_concept};
use super::super::shared;
use super::super::time::Moment;
use super::{Archetype, Record};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitKind {
    Wellness,
    Symptom,
    Telehealth,
    Emergency,
    Inpatient,
    ProcedureVisit,
    Planned,
}

/// What an inpatient stay or procedure visit is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    None,
    Pacemaker,
    HipReplacement,
    Pneumonia,
    Colonoscopy,
}

#[derive(Debug, Clone)]
pub struct Visit {
    pub id: String,
    pub kind: VisitKind,
    pub focus: Focus,
    pub start: Moment,
    pub end: Moment,
    /// The first visit of its kind for this patient (some once-only content hangs off it).
    pub first_of_kind: bool,
}

const SICK_SINUS: ConditionCode = ConditionCode {
    snomed: Code {
        system: codes::SNOMED,
        code: "36083008",
        display: "Sick sinus syndrome (disorder)",
    },
    icd10: Code {
        system: codes::ICD10CM,
        code: "I49.5",
        display: "Sick sinus syndrome",
    },
};
const PNEUMONIA: ConditionCode = ConditionCode {
    snomed: Code {
        system: codes::SNOMED,
        code: "233604007",
        display: "Pneumonia (disorder)",
    },
    icd10: Code {
        system: codes::ICD10CM,
        code: "J18.9",
        display: "Pneumonia, unspecified organism",
    },
};
const HIP_OSTEOARTHRITIS: ConditionCode = ConditionCode {
    snomed: Code {
        system: codes::SNOMED,
        code: "239872002",
        display: "Osteoarthritis of hip (disorder)",
    },
    icd10: Code {
        system: codes::ICD10CM,
        code: "M16.9",
        display: "Osteoarthritis of hip, unspecified",
    },
};

impl<S: FnMut(Value)> Record<'_, S> {
    /// Plans the encounters (ids and times) before any is built, so that once-only resources can
    /// point at the right encounter.
    pub(super) fn schedule(&mut self) -> Vec<Visit> {
        let end_day = self.end.date().to_days();
        let birth_day = self.birth.to_days();
        let age_days = end_day - birth_day;
        let mut plan: Vec<(i64, VisitKind, Focus)> = Vec::new();
        if self.archetype == Archetype::Infant {
            for day in [5, 30, 60, 120, 180, 270, 365, 455, 545] {
                if day < age_days {
                    plan.push((birth_day + day, VisitKind::Wellness, Focus::None));
                }
            }
            plan.push((
                birth_day + self.rng.range(35, age_days - 1),
                VisitKind::Symptom,
                Focus::None,
            ));
        } else {
            for year in 0..3 {
                plan.push((
                    end_day - 20 - year * 365 - self.rng.range(0, 60),
                    VisitKind::Wellness,
                    Focus::None,
                ));
            }
            for _ in 0..2 {
                plan.push((
                    end_day - self.rng.range(30, 1000),
                    VisitKind::Symptom,
                    Focus::None,
                ));
            }
            plan.push((
                end_day - self.rng.range(10, 700),
                VisitKind::Telehealth,
                Focus::None,
            ));
            match self.archetype {
                Archetype::ReproductiveWoman
                | Archetype::Child
                | Archetype::YoungAdult
                | Archetype::DiabeticAdult => {
                    plan.push((
                        end_day - self.rng.range(40, 900),
                        VisitKind::Emergency,
                        Focus::None,
                    ));
                }
                Archetype::OlderMan => {
                    plan.push((
                        end_day - self.rng.range(200, 600),
                        VisitKind::Inpatient,
                        Focus::Pacemaker,
                    ));
                }
                Archetype::DeceasedElder => {
                    plan.push((
                        end_day - self.rng.range(400, 900),
                        VisitKind::Inpatient,
                        Focus::HipReplacement,
                    ));
                    plan.push((end_day - 4, VisitKind::Inpatient, Focus::Pneumonia));
                }
                Archetype::MidlifeWoman => {
                    plan.push((
                        end_day - self.rng.range(100, 800),
                        VisitKind::ProcedureVisit,
                        Focus::Colonoscopy,
                    ));
                }
                Archetype::Infant => {}
            }
        }
        if self.deceased.is_none() {
            plan.push((
                end_day + self.rng.range(14, 45),
                VisitKind::Planned,
                Focus::None,
            ));
        }
        plan.retain(|(day, _, _)| *day > birth_day);
        plan.sort_by_key(|(day, _, _)| *day);
        let mut seen: Vec<VisitKind> = Vec::new();
        let mut visits = Vec::with_capacity(plan.len());
        for (day, kind, focus) in plan {
            let start = Moment::at(
                super::super::time::CalendarDate::from_days(day),
                self.rng.range(8, 16),
                15 * self.rng.range(0, 3),
            );
            let end = match kind {
                VisitKind::Inpatient if focus == Focus::Pneumonia => {
                    self.end.plus_minutes(-1).max(start.plus_minutes(60))
                }
                VisitKind::Inpatient => start.plus_days(self.rng.range(2, 5)),
                VisitKind::Emergency => start.plus_minutes(self.rng.range(120, 360)),
                _ => start.plus_minutes(self.rng.range(20, 60)),
            };
            let first_of_kind = !seen.contains(&kind);
            seen.push(kind);
            let id = self.id("enc");
            visits.push(Visit {
                id,
                kind,
                focus,
                start,
                end,
                first_of_kind,
            });
        }
        visits
    }

    /// Everything recorded at one visit, then the Encounter itself (built last because it points
    /// at the diagnoses made during it).
    pub(super) fn visit(&mut self, visit: &Visit) {
        let adult = self.age_years_at(visit.start) >= 18;
        let mut reasons: Vec<Value> = Vec::new();
        let mut diagnoses: Vec<String> = Vec::new();
        let mut attending = self.pcp;
        let mut performer: Option<usize> = None;
        match visit.kind {
            VisitKind::Wellness => {
                self.vital_signs(visit);
                self.immunizations(visit);
                if adult || visit.first_of_kind {
                    self.lab_panels(visit);
                }
                if adult {
                    self.procedure(visit, &codes::PROCEDURES[2], None, None);
                }
                let note = codes::HISTORY_AND_PHYSICAL;
                self.clinical_note(visit, &note, visit.first_of_kind);
                reasons.push(
                    js!({"text": if adult { "Annual wellness visit" } else { "Well child visit" }}),
                );
            }
            VisitKind::Symptom => {
                self.vital_signs(visit);
                let problem = self.acute_problem(visit.start);
                let condition = self.encounter_diagnosis(visit, &problem);
                self.acute_medication(visit, &problem, &condition);
                if problem.snomed.code == "68566005" {
                    self.urinalysis(visit);
                }
                self.clinical_note(visit, &codes::PROGRESS_NOTE, false);
                reasons.push(concept(&problem.snomed));
                diagnoses.push(condition);
            }
            VisitKind::Telehealth => {
                self.clinical_note(visit, &codes::PROGRESS_NOTE, false);
                reasons.push(js!({"text": "Medication follow-up"}));
            }
            VisitKind::Emergency => {
                self.vital_signs(visit);
                let sprain = codes::ACUTE_CONDITIONS[5];
                let condition = self.encounter_diagnosis(visit, &sprain);
                self.acute_medication(visit, &sprain, &condition);
                self.covid_test(visit);
                self.chest_xray(visit);
                self.clinical_note(visit, &codes::CONSULT_NOTE, false);
                reasons.push(concept(&sprain.snomed));
                diagnoses.push(condition);
            }
            VisitKind::Inpatient => {
                self.vital_signs(visit);
                self.lab_panels(visit);
                let (problem, procedure) = match visit.focus {
                    Focus::Pacemaker => (
                        SICK_SINUS,
                        Some((codes::PACEMAKER_IMPLANT, codes::PACEMAKER)),
                    ),
                    Focus::HipReplacement => (
                        HIP_OSTEOARTHRITIS,
                        Some((codes::HIP_REPLACEMENT, codes::HIP_PROSTHESIS)),
                    ),
                    _ => (PNEUMONIA, None),
                };
                let condition = self.encounter_diagnosis(visit, &problem);
                if let Some((procedure_code, device_code)) = procedure {
                    attending = if visit.focus == Focus::Pacemaker {
                        shared::CARDIOLOGY
                    } else {
                        self.pcp
                    };
                    performer = Some(attending);
                    let order = self.service_request_for(
                        visit,
                        &procedure_code,
                        ("387713003", "Surgical procedure (procedure)"),
                        &condition,
                        &problem,
                    );
                    let device = self.implant(visit, &device_code);
                    self.procedure(visit, &procedure_code, Some(&order), Some(&device));
                    self.clinical_note(visit, &codes::PROCEDURE_NOTE, false);
                    if visit.focus == Focus::Pacemaker {
                        self.ekg_report(visit);
                    }
                } else {
                    self.chest_xray(visit);
                }
                self.clinical_note(visit, &codes::DISCHARGE_SUMMARY, false);
                reasons.push(concept(&problem.snomed));
                diagnoses.push(condition);
            }
            VisitKind::ProcedureVisit => {
                let screening = ConditionCode {
                    snomed: Code {
                        system: codes::SNOMED,
                        code: "275978004",
                        display: "Screening for malignant neoplasm of colon (procedure)",
                    },
                    icd10: Code {
                        system: codes::ICD10CM,
                        code: "Z12.11",
                        display: "Encounter for screening for malignant neoplasm of colon",
                    },
                };
                let order = self.service_request_for(
                    visit,
                    &codes::PROCEDURES[0],
                    ("387713003", "Surgical procedure (procedure)"),
                    "",
                    &screening,
                );
                self.procedure(visit, &codes::PROCEDURES[0], Some(&order), None);
                self.pathology_report(visit);
                self.clinical_note(visit, &codes::PROCEDURE_NOTE, false);
                reasons.push(concept(&screening.icd10));
            }
            VisitKind::Planned => {
                reasons.push(js!({"text": "Follow-up visit"}));
            }
        }
        self.encounter(visit, attending, performer, reasons, diagnoses);
    }

    fn acute_problem(&mut self, at: Moment) -> ConditionCode {
        let age = self.age_years_at(at);
        let table = codes::ACUTE_CONDITIONS;
        if age < 12 {
            // Children: otitis media or strep throat.
            if self.rng.chance(0.5) {
                table[4]
            } else {
                table[2]
            }
        } else if self.female && self.rng.chance(0.3) {
            table[3]
        } else {
            *self.rng.pick(&table[0..3])
        }
    }

    fn encounter(
        &mut self,
        visit: &Visit,
        attending: usize,
        performer: Option<usize>,
        reasons: Vec<Value>,
        diagnoses: Vec<String>,
    ) {
        let mut e = resource("Encounter", &visit.id, Some("us-core-encounter"));
        set(
            &mut e,
            "identifier",
            js!([{"use": "usual", "system": "https://sphere-ehr.example/sid/encounter", "value": format!("V-{}", visit.id)}]),
        );
        let planned = visit.kind == VisitKind::Planned;
        set(
            &mut e,
            "status",
            js!(if planned { "planned" } else { "finished" }),
        );
        let (class_code, class_display, type_code) = match visit.kind {
            VisitKind::Wellness => ("AMB", "ambulatory", codes::ENCOUNTER_CHECKUP),
            VisitKind::Symptom | VisitKind::Planned => {
                ("AMB", "ambulatory", codes::ENCOUNTER_SYMPTOM)
            }
            VisitKind::ProcedureVisit => ("AMB", "ambulatory", codes::ENCOUNTER_SYMPTOM),
            VisitKind::Telehealth => ("VR", "virtual", codes::ENCOUNTER_TELEHEALTH),
            VisitKind::Emergency => ("EMER", "emergency", codes::ENCOUNTER_EMERGENCY),
            VisitKind::Inpatient => ("IMP", "inpatient encounter", codes::ENCOUNTER_INPATIENT),
        };
        set(
            &mut e,
            "class",
            js!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class_code, "display": class_display}),
        );
        set(&mut e, "type", js!([concept(&type_code)]));
        set(&mut e, "subject", self.subject());
        let period = if planned {
            js!({"start": visit.start.iso()})
        } else {
            js!({"start": visit.start.iso(), "end": visit.end.iso()})
        };
        let mut participants = vec![js!({
            "type": [simple_concept("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "ATND", "attender")],
            "period": period.clone(),
            "individual": self.practitioner(attending),
        })];
        if let Some(p) = performer {
            if p != attending {
                participants.push(js!({
                    "type": [simple_concept("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF", "primary performer")],
                    "period": period.clone(),
                    "individual": self.practitioner(p),
                }));
            }
        }
        set(&mut e, "participant", Value::Array(participants));
        set(&mut e, "period", period.clone());
        set(&mut e, "reasonCode", Value::Array(reasons));
        if !diagnoses.is_empty() {
            set(
                &mut e,
                "reasonReference",
                Value::Array(
                    diagnoses
                        .iter()
                        .map(|d| reference("Condition", d))
                        .collect(),
                ),
            );
            set(&mut e, "diagnosis", Value::Array(diagnoses.iter().enumerate().map(|(i, d)| js!({
                "condition": reference("Condition", d),
                "use": simple_concept("http://terminology.hl7.org/CodeSystem/diagnosis-role", "DD", "Discharge diagnosis"),
                "rank": i + 1,
            })).collect()));
        }
        if matches!(visit.kind, VisitKind::Inpatient | VisitKind::Emergency) {
            let (code, display) = if visit.focus == Focus::Pneumonia {
                ("exp", "Expired")
            } else {
                ("home", "Home")
            };
            set(
                &mut e,
                "hospitalization",
                js!({
                    "admitSource": simple_concept("http://terminology.hl7.org/CodeSystem/admit-source", if visit.kind == VisitKind::Emergency { "emd" } else { "gp" }, if visit.kind == VisitKind::Emergency { "From accident/emergency department" } else { "General Practitioner referral" }),
                    "dischargeDisposition": simple_concept("http://terminology.hl7.org/CodeSystem/discharge-disposition", code, display),
                }),
            );
        }
        let location = if matches!(visit.kind, VisitKind::Inpatient | VisitKind::Emergency) {
            self.ids.hospital()
        } else {
            self.ids.clinic()
        };
        set(
            &mut e,
            "location",
            js!([{"location": reference("Location", &location), "status": if planned { "planned" } else { "completed" }, "period": period}]),
        );
        set(&mut e, "serviceProvider", self.service_org());
        self.emit(e, if planned { visit.start } else { visit.end }, attending);
    }
}
