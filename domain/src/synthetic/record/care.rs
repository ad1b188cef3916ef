//! Problems, allergies, medications, care coordination, procedures, devices and notes.

use serde_json::{Map, Value};

use super::super::codes::{self, Code, ConditionCode, Drug};
use super::super::datatypes::{
    base64, concept, concept_of, quantity, reference, resource, set, simple_concept,
};
use super::super::shared;
use super::super::time::{CalendarDate, Moment};
use super::visits::Visit;
use super::{Archetype, Record, Recorded};

const CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
const VERIFICATION: &str = "http://terminology.hl7.org/CodeSystem/condition-ver-status";

fn condition_concept(code: &ConditionCode) -> Value {
    concept_of(
        &[&code.snomed, &code.icd10],
        code.snomed
            .display
            .trim_end_matches(" (disorder)")
            .trim_end_matches(" (finding)"),
    )
}

impl<S: FnMut(Value)> Record<'_, S> {
    pub(super) fn coverage(&mut self) {
        let id = self.id("cov");
        let mut c = resource("Coverage", &id, Some("us-core-coverage"));
        let child = matches!(self.archetype, Archetype::Infant | Archetype::Child);
        let medicaid = self.archetype == Archetype::MidlifeWoman;
        let member = format!("{:011}", self.rng.below(100_000_000_000));
        set(
            &mut c,
            "identifier",
            js!([{
                "type": simple_concept("http://terminology.hl7.org/CodeSystem/v2-0203", "MB", "Member Number"),
                "system": "https://acme-health-plan.example/member-id",
                "value": member.clone(),
            }]),
        );
        set(&mut c, "status", js!("active"));
        let kind = if medicaid {
            js!({"coding": [{"system": "https://nahdo.org/sopt", "code": "2", "display": "MEDICAID"}], "text": "Medicaid"})
        } else if self.age_years() >= 65 {
            js!({"coding": [{"system": "https://nahdo.org/sopt", "code": "1", "display": "MEDICARE"}], "text": "Medicare"})
        } else {
            js!({"coding": [
                {"system": "https://nahdo.org/sopt", "code": "3712", "display": "PPO"},
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PPO", "display": "preferred provider organization policy"},
            ], "text": "PPO"})
        };
        set(&mut c, "type", kind);
        if child {
            set(
                &mut c,
                "policyHolder",
                reference("RelatedPerson", &self.related_person),
            );
            set(
                &mut c,
                "subscriber",
                reference("RelatedPerson", &self.related_person),
            );
        } else {
            set(&mut c, "subscriber", self.subject());
        }
        set(&mut c, "subscriberId", js!(format!("SUB{}", &member[..9])));
        set(&mut c, "beneficiary", self.subject());
        let (rel, rel_display) = if child {
            ("child", "Child")
        } else {
            ("self", "Self")
        };
        set(
            &mut c,
            "relationship",
            simple_concept(
                "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                rel,
                rel_display,
            ),
        );
        let start = CalendarDate::new(self.end.date().year - 2, 1, 1).max(self.birth);
        set(
            &mut c,
            "period",
            js!({"start": start.to_string(), "end": CalendarDate::new(self.end.date().year, 12, 31).to_string()}),
        );
        let payor = if medicaid {
            self.ids.medicaid()
        } else {
            self.ids.payer()
        };
        set(&mut c, "payor", js!([reference("Organization", &payor)]));
        set(
            &mut c,
            "class",
            js!([
                {"type": simple_concept("http://terminology.hl7.org/CodeSystem/coverage-class", "group", "Group"), "value": format!("GRP{}", 100 + self.rng.below(900)), "name": "Sphere employee group"},
                {"type": simple_concept("http://terminology.hl7.org/CodeSystem/coverage-class", "plan", "Plan"), "value": if medicaid { "medicaid-basic" } else { "gold" }, "name": if medicaid { "Medicaid Basic" } else { "Acme Gold Plan" }},
            ]),
        );
        self.emit(c, Moment::at(start, 9, 0), self.pcp);
    }

    /// Problem-list items and health concerns (including SDOH), with onset and recorded dates.
    pub(super) fn chronic_conditions(&mut self) {
        use codes::*;
        let list: &[ConditionCode] = match self.archetype {
            Archetype::ReproductiveWoman | Archetype::Child => &[ASTHMA],
            Archetype::OlderMan => &[DIABETES_T2, HYPERTENSION, HYPERLIPIDEMIA],
            Archetype::Infant => &[],
            Archetype::MidlifeWoman => &[HYPERTENSION, DEPRESSION],
            Archetype::DeceasedElder => &[COPD, HYPERTENSION],
            Archetype::YoungAdult => &[GERD],
            Archetype::DiabeticAdult => &[DIABETES_T2, HYPERLIPIDEMIA],
        };
        let span = (self.end.date().to_days() - self.birth.to_days()).max(2);
        for code in list {
            let onset = Moment::at(
                CalendarDate::from_days(self.birth.to_days() + self.rng.range(span / 2, span - 1)),
                10,
                0,
            );
            // GERD resolved: exercises abatementDateTime and the "resolved" clinical status.
            let resolved = code.snomed.code == GERD.snomed.code;
            let abatement =
                resolved.then(|| onset.plus_days(self.rng.range(60, 300)).min(self.end));
            let id = self.condition(
                code,
                ("problem-list-item", CONDITION_CATEGORY, "Problem List Item"),
                None,
                onset,
                abatement,
                "confirmed",
                None,
            );
            self.chronic.push(Recorded { id, code: *code });
        }
        // Health concerns: SDOH for some, stress for the young adult.
        let concern: Option<(ConditionCode, bool)> = match self.archetype {
            Archetype::MidlifeWoman => Some((SDOH_CONDITIONS[0], true)),
            Archetype::DeceasedElder => Some((SDOH_CONDITIONS[2], true)),
            Archetype::YoungAdult => Some((SDOH_CONDITIONS[1], false)),
            _ => None,
        };
        if let Some((code, sdoh)) = concern {
            let onset = self.end.plus_days(-self.rng.range(100, 500));
            let id = self.condition(
                &code,
                (
                    "health-concern",
                    US_CORE_CONDITION_CATEGORY,
                    "Health Concern",
                ),
                None,
                onset,
                None,
                if sdoh { "confirmed" } else { "provisional" },
                sdoh.then_some(("sdoh", "SDOH")),
            );
            self.chronic.push(Recorded { id, code });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn condition(
        &mut self,
        code: &ConditionCode,
        category: (&str, &str, &str),
        encounter: Option<&str>,
        onset: Moment,
        abatement: Option<Moment>,
        verification: &str,
        screening: Option<(&str, &str)>,
    ) -> String {
        let id = self.id("cond");
        let profile = if encounter.is_some() {
            "us-core-condition-encounter-diagnosis"
        } else {
            "us-core-condition-problems-health-concerns"
        };
        let mut c = resource("Condition", &id, Some(profile));
        let recorded = onset.plus_days(self.rng.range(0, 3)).min(self.end);
        set(
            &mut c,
            "extension",
            js!([{"url": "http://hl7.org/fhir/StructureDefinition/condition-assertedDate", "valueDateTime": onset.day_string()}]),
        );
        let (status, status_display) = if abatement.is_some() {
            ("resolved", "Resolved")
        } else {
            ("active", "Active")
        };
        set(
            &mut c,
            "clinicalStatus",
            simple_concept(CLINICAL, status, status_display),
        );
        let verification_display = if verification == "confirmed" {
            "Confirmed"
        } else {
            "Provisional"
        };
        set(
            &mut c,
            "verificationStatus",
            simple_concept(VERIFICATION, verification, verification_display),
        );
        let mut categories = vec![simple_concept(category.1, category.0, category.2)];
        if let Some((code, display)) = screening {
            categories.push(simple_concept(codes::US_CORE_CATEGORY, code, display));
        }
        set(&mut c, "category", Value::Array(categories));
        set(&mut c, "code", condition_concept(code));
        set(&mut c, "subject", self.subject());
        if let Some(enc) = encounter {
            set(&mut c, "encounter", reference("Encounter", enc));
        }
        set(&mut c, "onsetDateTime", js!(onset.iso()));
        if let Some(a) = abatement {
            set(&mut c, "abatementDateTime", js!(a.iso()));
        }
        set(&mut c, "recordedDate", js!(recorded.iso()));
        set(&mut c, "recorder", self.practitioner(self.pcp));
        set(&mut c, "asserter", self.practitioner(self.pcp));
        self.emit(c, recorded, self.pcp);
        id
    }

    /// A diagnosis made at a visit; acute problems resolve a couple of weeks later.
    pub(super) fn encounter_diagnosis(&mut self, visit: &Visit, problem: &ConditionCode) -> String {
        let acute = codes::ACUTE_CONDITIONS
            .iter()
            .any(|c| c.snomed.code == problem.snomed.code);
        let abatement = acute
            .then(|| visit.start.plus_days(self.rng.range(7, 21)))
            .filter(|a| *a <= self.end);
        let onset = visit.start.plus_days(-self.rng.range(1, 4));
        self.condition(
            problem,
            (
                "encounter-diagnosis",
                codes::CONDITION_CATEGORY,
                "Encounter Diagnosis",
            ),
            Some(&visit.id),
            onset,
            abatement,
            "confirmed",
            None,
        )
    }

    pub(super) fn allergies(&mut self) {
        let recorded = self
            .end
            .plus_days(-self.rng.range(300, 1500))
            .max(Moment::at(self.birth, 12, 0).plus_days(60));
        if self.archetype == Archetype::Infant {
            let id = self.id("algy");
            let mut a = resource(
                "AllergyIntolerance",
                &id,
                Some("us-core-allergyintolerance"),
            );
            set(
                &mut a,
                "clinicalStatus",
                simple_concept(
                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "active",
                    "Active",
                ),
            );
            set(
                &mut a,
                "verificationStatus",
                simple_concept(
                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "confirmed",
                    "Confirmed",
                ),
            );
            set(
                &mut a,
                "code",
                simple_concept(codes::SNOMED, "716186003", "No known allergy (situation)"),
            );
            set(&mut a, "patient", self.subject());
            set(&mut a, "recordedDate", js!(recorded.iso()));
            set(&mut a, "recorder", self.practitioner(self.pcp));
            self.emit(a, recorded, self.pcp);
            return;
        }
        let count = 1 + self.rng.below(2) as usize;
        let first = self.rng.below(codes::ALLERGENS.len() as u64) as usize;
        for k in 0..count {
            let allergen = codes::ALLERGENS[(first + k * 3) % codes::ALLERGENS.len()];
            let id = self.id("algy");
            let mut a = resource(
                "AllergyIntolerance",
                &id,
                Some("us-core-allergyintolerance"),
            );
            let (status, display) = match (k, self.rng.below(6)) {
                (1, 0) => ("resolved", "Resolved"),
                (1, 1) => ("inactive", "Inactive"),
                _ => ("active", "Active"),
            };
            set(
                &mut a,
                "clinicalStatus",
                simple_concept(
                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    status,
                    display,
                ),
            );
            let (ver, ver_display) = if k == 1 {
                ("unconfirmed", "Unconfirmed")
            } else {
                ("confirmed", "Confirmed")
            };
            set(
                &mut a,
                "verificationStatus",
                simple_concept(
                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    ver,
                    ver_display,
                ),
            );
            let category = match allergen.code {
                "762952008" | "227493005" => "food",
                "111088007" => "environment",
                _ => "medication",
            };
            set(
                &mut a,
                "type",
                js!(if category == "medication" && allergen.code == "2670" {
                    "intolerance"
                } else {
                    "allergy"
                }),
            );
            set(&mut a, "category", js!([category]));
            set(
                &mut a,
                "criticality",
                js!(if self.rng.chance(0.3) { "high" } else { "low" }),
            );
            set(&mut a, "code", concept(&allergen));
            set(&mut a, "patient", self.subject());
            let onset = Moment::at(CalendarDate::from_days(self.birth.to_days() + 365), 12, 0)
                .min(recorded);
            set(&mut a, "onsetDateTime", js!(onset.iso()));
            set(&mut a, "recordedDate", js!(recorded.iso()));
            set(&mut a, "recorder", self.practitioner(self.pcp));
            set(&mut a, "asserter", self.subject());
            let manifestation = *self.rng.pick(codes::REACTIONS);
            let severity = *self.rng.pick(&["mild", "moderate", "severe"]);
            set(
                &mut a,
                "reaction",
                js!([{"manifestation": [concept(&manifestation)], "severity": severity, "onset": onset.iso()}]),
            );
            self.emit(a, recorded, self.pcp);
        }
    }

    pub(super) fn care_team(&mut self) {
        let id = self.id("ct");
        let mut t = resource("CareTeam", &id, Some("us-core-careteam"));
        let team_status = if self.deceased.is_some() {
            "inactive"
        } else {
            "active"
        };
        set(&mut t, "status", js!(team_status));
        set(
            &mut t,
            "name",
            js!(format!(
                "Primary care team for {} {}",
                self.given, self.family
            )),
        );
        set(&mut t, "subject", self.subject());
        let start = Moment::at(
            self.birth
                .max(CalendarDate::from_days(self.end.date().to_days() - 3 * 365)),
            9,
            0,
        );
        set(&mut t, "period", js!({"start": start.day_string()}));
        set(
            &mut t,
            "participant",
            js!([
                {"role": [concept(&codes::PRIMARY_CARE_PROVIDER)], "member": self.practitioner(self.pcp), "onBehalfOf": self.service_org()},
                {"role": [concept(&codes::NUCC_NURSE_PRACTITIONER)], "member": reference("PractitionerRole", &self.ids.role(shared::NURSE_PRACTITIONER))},
                {"role": [simple_concept(codes::SNOMED, "116154003", "Patient (person)")], "member": self.subject()},
                {"role": [concept(&codes::CAREGIVER)], "member": reference("RelatedPerson", &self.related_person)},
            ]),
        );
        set(&mut t, "managingOrganization", js!([self.service_org()]));
        self.emit(t, start, self.pcp);
        if self.archetype == Archetype::OlderMan {
            // A past cardiology team, so that status searches see more than one value.
            let id = self.id("ct");
            let mut t = resource("CareTeam", &id, Some("us-core-careteam"));
            set(&mut t, "status", js!("inactive"));
            set(&mut t, "name", js!("Cardiology consult team"));
            set(&mut t, "subject", self.subject());
            set(
                &mut t,
                "period",
                js!({"start": start.plus_days(-400).day_string(), "end": start.plus_days(-200).day_string()}),
            );
            set(
                &mut t,
                "participant",
                js!([
                    {"role": [concept(&codes::CARDIOLOGIST)], "member": self.practitioner(shared::CARDIOLOGY)},
                ]),
            );
            self.emit(t, start.plus_days(-400), shared::CARDIOLOGY);
        }
    }

    /// Long-term medications for the chronic problems, each with a fill and a refill.
    pub(super) fn chronic_medications(&mut self, (encounter, at): &(String, Moment)) {
        let mut plan: Vec<(Drug, Option<Recorded>, &str)> = Vec::new();
        for recorded in self.chronic.clone() {
            let drug = match recorded.code.snomed.code {
                "44054006" => Some(codes::METFORMIN),
                "38341003" => Some(if self.age_years() > 60 {
                    codes::AMLODIPINE
                } else {
                    codes::LISINOPRIL
                }),
                "55822004" => Some(codes::ATORVASTATIN),
                "195967001" => Some(codes::ALBUTEROL),
                "235595009" => Some(codes::NIZATIDINE),
                _ => None,
            };
            if let Some(drug) = drug {
                // GERD resolved, and nothing stays active after death.
                let status = if recorded.code.snomed.code == "235595009" || self.deceased.is_some()
                {
                    "stopped"
                } else {
                    "active"
                };
                plan.push((drug, Some(recorded), status));
            }
        }
        for (k, (drug, reason, status)) in plan.into_iter().enumerate() {
            // Alternate between a coded medication and a Medication resource, so that both
            // medication[x] forms and `_include=MedicationRequest:medication` have data.
            let by_reference = k % 2 == 0;
            let authored = at
                .plus_days(-self.rng.range(0, 200))
                .max(Moment::at(self.birth, 12, 0));
            let request = self.medication_request(
                &drug,
                by_reference,
                status,
                "order",
                Some(encounter),
                authored,
                reason.as_ref(),
                None,
            );
            if status == "active" {
                self.dispense(
                    &drug,
                    by_reference,
                    &request,
                    authored.plus_days(1),
                    "FF",
                    "completed",
                );
                self.dispense(
                    &drug,
                    by_reference,
                    &request,
                    authored.plus_days(31),
                    "RF",
                    "completed",
                );
                self.dispense(
                    &drug,
                    by_reference,
                    &request,
                    authored.plus_days(61),
                    "RF",
                    "in-progress",
                );
            }
        }
        if self.age_years() >= 12 {
            // Over-the-counter medicines the patient reports taking.
            let drug = if self.rng.chance(0.5) {
                codes::ACETAMINOPHEN
            } else {
                codes::CETIRIZINE
            };
            let by_patient = self.archetype != Archetype::OlderMan;
            self.medication_request(
                &drug,
                false,
                "active",
                "plan",
                None,
                *at,
                None,
                Some(by_patient),
            );
        }
    }

    /// Builds and emits a MedicationRequest (and its Medication when `by_reference`); returns its id.
    #[allow(clippy::too_many_arguments)]
    fn medication_request(
        &mut self,
        drug: &Drug,
        by_reference: bool,
        status: &str,
        intent: &str,
        encounter: Option<&String>,
        authored: Moment,
        reason: Option<&Recorded>,
        reported_by_patient: Option<bool>,
    ) -> String {
        let id = self.id("mr");
        let mut m = resource("MedicationRequest", &id, Some("us-core-medicationrequest"));
        set(&mut m, "status", js!(status));
        set(&mut m, "intent", js!(intent));
        let (cat, cat_display) = match (reported_by_patient, encounter.is_some()) {
            (Some(_), _) => ("community", "Community"),
            (None, true) => ("outpatient", "Outpatient"),
            (None, false) => ("discharge", "Discharge"),
        };
        set(
            &mut m,
            "category",
            js!([simple_concept(
                "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                cat,
                cat_display
            )]),
        );
        match reported_by_patient {
            Some(true) => set(&mut m, "reportedBoolean", js!(true)),
            Some(false) => set(&mut m, "reportedReference", self.practitioner(self.pcp)),
            None => {}
        }
        self.medication_choice(&mut m, drug, by_reference, &id);
        set(&mut m, "subject", self.subject());
        if let Some(enc) = encounter {
            set(&mut m, "encounter", reference("Encounter", enc));
        }
        set(&mut m, "authoredOn", js!(authored.iso()));
        set(&mut m, "requester", self.practitioner(self.pcp));
        if let Some(reason) = reason {
            set(&mut m, "reasonCode", js!([condition_concept(&reason.code)]));
            set(
                &mut m,
                "reasonReference",
                js!([reference("Condition", &reason.id)]),
            );
        }
        set(&mut m, "dosageInstruction", js!([dosage(drug)]));
        let days = if intent == "order" && status != "stopped" {
            30
        } else {
            10
        };
        set(
            &mut m,
            "dispenseRequest",
            js!({
                "validityPeriod": {"start": authored.day_string(), "end": authored.plus_days(365).day_string()},
                "numberOfRepeatsAllowed": if days == 30 { 5 } else { 0 },
                "quantity": quantity(drug.dose * f64::from(drug.per_day) * f64::from(days), unit_display(drug.dose_unit), drug.dose_unit),
                "expectedSupplyDuration": {"value": days, "unit": "days", "system": codes::UCUM, "code": "d"},
            }),
        );
        set(&mut m, "substitution", js!({"allowedBoolean": true}));
        self.emit(m, authored, self.pcp);
        id
    }

    /// Sets medicationCodeableConcept, or emits a Medication and sets medicationReference to it.
    fn medication_choice(
        &mut self,
        resource_map: &mut Map<String, Value>,
        drug: &Drug,
        by_reference: bool,
        owner: &str,
    ) {
        if by_reference {
            let med_id = format!("{owner}-med");
            let mut med = resource("Medication", &med_id, Some("us-core-medication"));
            set(&mut med, "code", concept(&drug.rxnorm));
            set(&mut med, "status", js!("active"));
            self.emit_plain(med);
            set(
                resource_map,
                "medicationReference",
                reference("Medication", &med_id),
            );
        } else {
            set(
                resource_map,
                "medicationCodeableConcept",
                concept(&drug.rxnorm),
            );
        }
    }

    fn dispense(
        &mut self,
        drug: &Drug,
        by_reference: bool,
        request: &str,
        at: Moment,
        fill: &str,
        status: &str,
    ) {
        if at > self.end {
            return;
        }
        let id = self.id("md");
        let mut d = resource(
            "MedicationDispense",
            &id,
            Some("us-core-medicationdispense"),
        );
        set(&mut d, "status", js!(status));
        if by_reference {
            // The Medication was emitted with the request; the dispense points at the same one.
            set(
                &mut d,
                "medicationReference",
                reference("Medication", &format!("{request}-med")),
            );
        } else {
            set(&mut d, "medicationCodeableConcept", concept(&drug.rxnorm));
        }
        set(&mut d, "subject", self.subject());
        set(
            &mut d,
            "performer",
            js!([{"actor": reference("Organization", &self.ids.pharmacy())}]),
        );
        set(
            &mut d,
            "authorizingPrescription",
            js!([reference("MedicationRequest", request)]),
        );
        let display = if fill == "FF" { "First Fill" } else { "Refill" };
        set(
            &mut d,
            "type",
            simple_concept(
                "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                fill,
                display,
            ),
        );
        set(
            &mut d,
            "quantity",
            quantity(
                drug.dose * f64::from(drug.per_day) * 30.0,
                unit_display(drug.dose_unit),
                drug.dose_unit,
            ),
        );
        set(
            &mut d,
            "daysSupply",
            js!({"value": 30, "unit": "days", "system": codes::UCUM, "code": "d"}),
        );
        if status == "completed" {
            set(&mut d, "whenPrepared", js!(at.plus_minutes(-60).iso()));
            set(&mut d, "whenHandedOver", js!(at.iso()));
        }
        set(&mut d, "dosageInstruction", js!([dosage(drug)]));
        set(&mut d, "substitution", js!({"wasSubstituted": false}));
        self.emit(d, at, shared::PHARMACIST);
    }

    /// A prescription for an acute problem diagnosed at a visit.
    pub(super) fn acute_medication(
        &mut self,
        visit: &Visit,
        problem: &ConditionCode,
        condition: &str,
    ) {
        let drug = match problem.snomed.code {
            "43878008" | "65363002" | "68566005" => codes::AMOXICILLIN,
            "44465007" => codes::IBUPROFEN,
            _ => codes::ACETAMINOPHEN,
        };
        let reason = Recorded {
            id: condition.to_owned(),
            code: *problem,
        };
        let by_reference = self.rng.chance(0.5);
        let status = if visit.start.plus_days(30) < self.end {
            "completed"
        } else {
            "active"
        };
        let request = self.medication_request(
            &drug,
            by_reference,
            status,
            "order",
            Some(&visit.id),
            visit.end,
            Some(&reason),
            None,
        );
        self.dispense(
            &drug,
            by_reference,
            &request,
            visit.end.plus_minutes(90),
            "FF",
            "completed",
        );
    }

    pub(super) fn care_plan_and_goals(&mut self, (encounter, at): &(String, Moment)) {
        let mut goals = Vec::new();
        let mut goal_specs: Vec<(Value, Option<Value>, &str)> = Vec::new();
        if self.has_chronic(&codes::DIABETES_T2) {
            goal_specs.push((
                js!({"text": "Hemoglobin A1c below 7 percent"}),
                Some(js!({"measure": concept(&codes::HBA1C.loinc), "detailQuantity": {"value": 7, "comparator": "<", "unit": "%", "system": codes::UCUM, "code": "%"}})),
                "active",
            ));
        }
        if self.has_chronic(&codes::HYPERTENSION) {
            goal_specs.push((
                js!({"text": "Blood pressure below 140/90 mmHg"}),
                None,
                "active",
            ));
        }
        if self.has_chronic(&codes::ASTHMA) {
            goal_specs.push((
                js!({"text": "Asthma well controlled, no emergency visits"}),
                None,
                "active",
            ));
        }
        if self.archetype == Archetype::MidlifeWoman {
            goal_specs.push((
                concept(&Code {
                    system: codes::SNOMED,
                    code: "406156006",
                    display: "In paid employment (finding)",
                }),
                None,
                "active",
            ));
        }
        if matches!(self.archetype, Archetype::Infant | Archetype::Child) {
            goal_specs.push((
                js!({"text": "Up to date on childhood immunizations"}),
                None,
                "active",
            ));
        }
        goal_specs.push((
            js!({"text": "Walk 30 minutes five days a week"}),
            None,
            if self.rng.chance(0.5) {
                "completed"
            } else {
                "proposed"
            },
        ));
        for (description, target, status) in goal_specs {
            let id = self.id("goal");
            let mut g = resource("Goal", &id, Some("us-core-goal"));
            let status = if self.deceased.is_some() && status == "active" {
                "cancelled"
            } else {
                status
            };
            set(&mut g, "lifecycleStatus", js!(status));
            if status == "completed" {
                set(
                    &mut g,
                    "achievementStatus",
                    simple_concept(
                        "http://terminology.hl7.org/CodeSystem/goal-achievement",
                        "achieved",
                        "Achieved",
                    ),
                );
            }
            set(&mut g, "description", description);
            set(&mut g, "subject", self.subject());
            set(&mut g, "startDate", js!(at.day_string()));
            let due = at.plus_days(180 + self.rng.range(0, 180)).day_string();
            let mut target = target.unwrap_or_else(|| js!({}));
            target["dueDate"] = js!(due);
            set(&mut g, "target", js!([target]));
            set(&mut g, "expressedBy", self.practitioner(self.pcp));
            if let Some(first) = self.chronic.first() {
                set(
                    &mut g,
                    "addresses",
                    js!([reference("Condition", &first.id)]),
                );
            }
            self.emit(g, *at, self.pcp);
            goals.push(id);
        }
        let id = self.id("cp");
        let mut p = resource("CarePlan", &id, Some("us-core-careplan"));
        let problems: Vec<&str> = self.chronic.iter().map(|c| c.code.snomed.display).collect();
        let summary = if problems.is_empty() {
            "Routine preventive care.".to_owned()
        } else {
            format!("Plan of care for: {}.", problems.join("; "))
        };
        set(
            &mut p,
            "text",
            js!({"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>{}</p></div>", escape_xml(&summary))}),
        );
        set(
            &mut p,
            "status",
            js!(if self.deceased.is_some() {
                "revoked"
            } else {
                "active"
            }),
        );
        set(&mut p, "intent", js!("plan"));
        set(
            &mut p,
            "category",
            js!([{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/careplan-category", "code": "assess-plan", "display": "Assessment and Plan of Treatment"}], "text": "Assessment and Plan of Treatment"}]),
        );
        set(&mut p, "title", js!("Assessment and plan"));
        set(&mut p, "subject", self.subject());
        set(&mut p, "encounter", reference("Encounter", encounter));
        set(&mut p, "period", js!({"start": at.day_string()}));
        set(&mut p, "created", js!(at.iso()));
        set(&mut p, "author", self.practitioner(self.pcp));
        if !self.chronic.is_empty() {
            set(
                &mut p,
                "addresses",
                Value::Array(
                    self.chronic
                        .iter()
                        .map(|c| reference("Condition", &c.id))
                        .collect(),
                ),
            );
        }
        set(
            &mut p,
            "goal",
            Value::Array(goals.iter().map(|g| reference("Goal", g)).collect()),
        );
        let mut activities = vec![
            js!({"detail": {"kind": "ServiceRequest", "code": {"text": "Follow-up visit"}, "status": "scheduled", "description": "Follow-up visit with primary care"}}),
        ];
        if let Some(order) = self.planned_orders(encounter, *at) {
            activities.push(js!({"reference": reference("ServiceRequest", &order)}));
        }
        set(&mut p, "activity", Value::Array(activities));
        self.emit(p, *at, self.pcp);
    }

    /// Orders still open at the end of the timeline: a repeat HbA1c for diabetics (returned, for
    /// the care plan to point at), and a physical therapy referral the young adult cancelled.
    fn planned_orders(&mut self, encounter: &str, at: Moment) -> Option<String> {
        if self.archetype == Archetype::YoungAdult {
            let id = self.id("sr");
            let mut s = resource("ServiceRequest", &id, Some("us-core-servicerequest"));
            set(&mut s, "status", js!("revoked"));
            set(&mut s, "intent", js!("order"));
            set(
                &mut s,
                "category",
                js!([simple_concept(
                    codes::SNOMED,
                    "386053000",
                    "Evaluation procedure (procedure)"
                )]),
            );
            set(
                &mut s,
                "code",
                simple_concept(
                    codes::SNOMED,
                    "91251008",
                    "Physical therapy procedure (regime/therapy)",
                ),
            );
            set(&mut s, "subject", self.subject());
            set(&mut s, "encounter", reference("Encounter", encounter));
            set(
                &mut s,
                "occurrencePeriod",
                js!({"start": at.plus_days(7).day_string(), "end": at.plus_days(60).day_string()}),
            );
            set(&mut s, "authoredOn", js!(at.iso()));
            set(&mut s, "requester", self.practitioner(self.pcp));
            set(&mut s, "reasonCode", js!([{"text": "Low back pain"}]));
            self.emit(s, at, self.pcp);
        }
        let diabetes = self.chronic_id(&codes::DIABETES_T2)?;
        if self.deceased.is_some() {
            return None;
        }
        let id = self.id("sr");
        let mut s = resource("ServiceRequest", &id, Some("us-core-servicerequest"));
        set(&mut s, "status", js!("active"));
        set(&mut s, "intent", js!("order"));
        set(
            &mut s,
            "category",
            js!([simple_concept(
                codes::SNOMED,
                "108252007",
                "Laboratory procedure"
            )]),
        );
        set(&mut s, "code", concept(&codes::HBA1C.loinc));
        set(&mut s, "subject", self.subject());
        set(&mut s, "encounter", reference("Encounter", encounter));
        let due = self.end.plus_days(30);
        set(
            &mut s,
            "occurrencePeriod",
            js!({"start": due.day_string(), "end": due.plus_days(60).day_string()}),
        );
        set(&mut s, "authoredOn", js!(at.iso()));
        set(&mut s, "requester", self.practitioner(self.pcp));
        set(
            &mut s,
            "reasonCode",
            js!([condition_concept(&codes::DIABETES_T2)]),
        );
        set(
            &mut s,
            "reasonReference",
            js!([reference("Condition", &diabetes)]),
        );
        self.emit(s, at, self.pcp);
        Some(id)
    }

    pub(super) fn immunizations(&mut self, visit: &Visit) {
        let age = self.age_years_at(visit.start);
        let vaccines: Vec<Code> = if age < 18 {
            let first = self.rng.below(codes::CHILD_VACCINES.len() as u64) as usize;
            vec![
                codes::CHILD_VACCINES[first],
                codes::CHILD_VACCINES[(first + 2) % codes::CHILD_VACCINES.len()],
            ]
        } else if age >= 65 && visit.first_of_kind {
            vec![codes::ADULT_VACCINES[0], codes::ADULT_VACCINES[4]]
        } else if visit.first_of_kind {
            vec![codes::ADULT_VACCINES[0], codes::ADULT_VACCINES[1]]
        } else {
            vec![codes::ADULT_VACCINES[0]]
        };
        for (k, vaccine) in vaccines.iter().enumerate() {
            let id = self.id("imm");
            let mut i = resource("Immunization", &id, Some("us-core-immunization"));
            // The young adult declines one vaccine: status not-done with a reason.
            let declined = self.archetype == Archetype::YoungAdult && visit.first_of_kind && k == 1;
            set(
                &mut i,
                "status",
                js!(if declined { "not-done" } else { "completed" }),
            );
            if declined {
                set(
                    &mut i,
                    "statusReason",
                    simple_concept(
                        "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                        "PATOBJ",
                        "patient objection",
                    ),
                );
            }
            set(&mut i, "vaccineCode", concept(vaccine));
            set(&mut i, "patient", self.subject());
            set(&mut i, "encounter", reference("Encounter", &visit.id));
            let when = visit.start.plus_minutes(15);
            set(&mut i, "occurrenceDateTime", js!(when.iso()));
            set(&mut i, "recorded", js!(when.iso()));
            set(&mut i, "primarySource", js!(!(k == 1 && age >= 18)));
            if k == 1 && age >= 18 {
                set(
                    &mut i,
                    "reportOrigin",
                    simple_concept(
                        "http://terminology.hl7.org/CodeSystem/immunization-origin",
                        "recall",
                        "Parent/Guardian/Patient Recall",
                    ),
                );
            }
            set(
                &mut i,
                "location",
                reference("Location", &self.ids.clinic()),
            );
            if !declined {
                set(
                    &mut i,
                    "lotNumber",
                    js!(format!("LOT{}", 1000 + self.rng.below(9000))),
                );
                set(
                    &mut i,
                    "site",
                    simple_concept(
                        "http://terminology.hl7.org/CodeSystem/v3-ActSite",
                        "LA",
                        "left arm",
                    ),
                );
                set(
                    &mut i,
                    "route",
                    simple_concept(
                        "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration",
                        "IM",
                        "Injection, intramuscular",
                    ),
                );
                set(&mut i, "doseQuantity", quantity(0.5, "mL", "mL"));
                set(
                    &mut i,
                    "performer",
                    js!([{
                        "function": simple_concept("http://terminology.hl7.org/CodeSystem/v2-0443", "AP", "Administering Provider"),
                        "actor": self.practitioner(shared::NURSE_PRACTITIONER),
                    }]),
                );
                set(
                    &mut i,
                    "protocolApplied",
                    js!([{"doseNumberPositiveInt": 1}]),
                );
            }
            self.emit(i, when, shared::NURSE_PRACTITIONER);
        }
    }

    /// An order for a procedure (completed by the visit); returns its id.
    pub(super) fn service_request_for(
        &mut self,
        visit: &Visit,
        code: &Code,
        category: (&str, &str),
        reason_id: &str,
        reason: &ConditionCode,
    ) -> String {
        let id = self.id("sr");
        let authored = visit.start.plus_days(-self.rng.range(7, 30));
        let mut s = resource("ServiceRequest", &id, Some("us-core-servicerequest"));
        set(&mut s, "status", js!("completed"));
        set(&mut s, "intent", js!("order"));
        set(
            &mut s,
            "category",
            js!([simple_concept(codes::SNOMED, category.0, category.1)]),
        );
        set(&mut s, "code", concept(code));
        set(&mut s, "subject", self.subject());
        set(
            &mut s,
            "occurrencePeriod",
            js!({"start": visit.start.iso(), "end": visit.end.iso()}),
        );
        set(&mut s, "authoredOn", js!(authored.iso()));
        set(&mut s, "requester", self.practitioner(self.pcp));
        set(&mut s, "reasonCode", js!([condition_concept(reason)]));
        if !reason_id.is_empty() {
            set(
                &mut s,
                "reasonReference",
                js!([reference("Condition", reason_id)]),
            );
        }
        self.emit(s, authored, self.pcp);
        id
    }

    pub(super) fn procedure(
        &mut self,
        visit: &Visit,
        code: &Code,
        based_on: Option<&String>,
        device: Option<&String>,
    ) {
        let id = self.id("proc");
        let mut p = resource("Procedure", &id, Some("us-core-procedure"));
        if let Some(order) = based_on {
            set(&mut p, "basedOn", js!([reference("ServiceRequest", order)]));
        }
        set(&mut p, "status", js!("completed"));
        set(&mut p, "code", concept(code));
        set(&mut p, "subject", self.subject());
        set(&mut p, "encounter", reference("Encounter", &visit.id));
        let performer = if device.is_some() && visit.focus == super::visits::Focus::Pacemaker {
            shared::CARDIOLOGY
        } else {
            self.pcp
        };
        if based_on.is_some() {
            let start = visit.start.plus_minutes(120);
            set(
                &mut p,
                "performedPeriod",
                js!({"start": start.iso(), "end": start.plus_minutes(75).iso()}),
            );
        } else {
            set(
                &mut p,
                "performedDateTime",
                js!(visit.start.plus_minutes(10).iso()),
            );
        }
        set(
            &mut p,
            "performer",
            js!([{"actor": self.practitioner(performer), "onBehalfOf": self.service_org()}]),
        );
        let location = if visit.kind == super::visits::VisitKind::Inpatient {
            self.ids.hospital()
        } else {
            self.ids.clinic()
        };
        set(&mut p, "location", reference("Location", &location));
        if let Some(device) = device {
            set(
                &mut p,
                "focalDevice",
                js!([{
                    "action": simple_concept(codes::SNOMED, "129338005", "Surgical implantation - action (qualifier value)"),
                    "manipulated": reference("Device", device),
                }]),
            );
        }
        self.emit(p, visit.end, performer);
    }

    /// An implantable device with a GS1 UDI; returns its id.
    pub(super) fn implant(&mut self, visit: &Visit, kind: &Code) -> String {
        let id = self.id("dev");
        let di = format!(
            "{:014}",
            10_000_000_000_000 + self.rng.below(89_999_999_999_999)
        );
        let made = CalendarDate::from_days(visit.start.date().to_days() - self.rng.range(90, 400));
        let expires = CalendarDate::from_days(visit.start.date().to_days() + 365 * 5);
        let lot = format!("L{}", 10_000 + self.rng.below(90_000));
        let serial = format!("SN{}", 100_000 + self.rng.below(900_000));
        let yymmdd = |d: CalendarDate| format!("{:02}{:02}{:02}", d.year % 100, d.month, d.day);
        let mut d = resource("Device", &id, Some("us-core-implantable-device"));
        set(
            &mut d,
            "udiCarrier",
            js!([{
                "deviceIdentifier": di.clone(),
                "issuer": "http://hl7.org/fhir/NamingSystem/gs1-di",
                "jurisdiction": "http://hl7.org/fhir/NamingSystem/fda-udi",
                "carrierHRF": format!("(01){di}(11){}(17){}(10){lot}(21){serial}", yymmdd(made), yymmdd(expires)),
                "entryType": "barcode",
            }]),
        );
        set(&mut d, "distinctIdentifier", js!(format!("DIST-{serial}")));
        set(&mut d, "status", js!("active"));
        set(&mut d, "manufacturer", js!("Acme Implant Devices"));
        set(&mut d, "manufactureDate", js!(made.to_string()));
        set(&mut d, "expirationDate", js!(expires.to_string()));
        set(&mut d, "lotNumber", js!(lot));
        set(&mut d, "serialNumber", js!(serial));
        set(
            &mut d,
            "deviceName",
            js!([{"name": kind.display.trim_end_matches(" (physical object)"), "type": "user-friendly-name"}]),
        );
        set(&mut d, "type", concept(kind));
        set(&mut d, "patient", self.subject());
        self.emit(d, visit.end, self.pcp);
        id
    }

    /// A clinical note as a DocumentReference with base64 text; `with_binary` also offers the
    /// note at a Binary URL (the other Must Support way of carrying content). A discharge summary
    /// is amended once: the first version is superseded and the current one replaces it.
    pub(super) fn clinical_note(&mut self, visit: &Visit, note_type: &Code, with_binary: bool) {
        let assessment = self
            .chronic
            .first()
            .map(|c| c.code.snomed.display)
            .unwrap_or("no active chronic problems");
        let text = format!(
            "{} for {} {}.\nDate: {}\nAssessment: {}.\nPlan: continue current management; follow up as scheduled.\n",
            note_type.display,
            self.given,
            self.family,
            visit.start.day_string(),
            assessment,
        );
        let replaces = if note_type.code == codes::DISCHARGE_SUMMARY.code {
            let draft = format!("{text}(Preliminary; medication list pending reconciliation.)\n");
            Some(self.document(visit, note_type, &draft, "superseded", None, false))
        } else {
            None
        };
        self.document(
            visit,
            note_type,
            &text,
            "current",
            replaces.as_deref(),
            with_binary,
        );
    }

    fn document(
        &mut self,
        visit: &Visit,
        note_type: &Code,
        text: &str,
        status: &str,
        replaces: Option<&str>,
        with_binary: bool,
    ) -> String {
        const FORMAT: &str = "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode";
        let id = self.id("doc");
        let author = self.pcp;
        let data = base64(text.as_bytes());
        let mut content = vec![js!({
            "attachment": {"contentType": "text/plain", "language": "en-US", "data": data.clone(), "title": note_type.display, "creation": visit.end.iso()},
            "format": {"system": FORMAT, "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient", "display": "mimeType Sufficient"},
        })];
        if with_binary {
            let binary_id = format!("{id}-bin");
            let mut b = resource("Binary", &binary_id, None);
            set(&mut b, "contentType", js!("text/plain"));
            set(&mut b, "data", js!(data));
            self.emit_plain(b);
            content.push(js!({
                "attachment": {"contentType": "text/plain", "url": format!("Binary/{binary_id}"), "title": note_type.display},
                "format": {"system": FORMAT, "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient", "display": "mimeType Sufficient"},
            }));
        }
        let mut d = resource("DocumentReference", &id, Some("us-core-documentreference"));
        set(
            &mut d,
            "identifier",
            js!([{"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", self.uuid())}]),
        );
        set(&mut d, "status", js!(status));
        set(
            &mut d,
            "docStatus",
            js!(if status == "current" {
                "final"
            } else {
                "preliminary"
            }),
        );
        set(&mut d, "type", concept(note_type));
        set(
            &mut d,
            "category",
            js!([{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "code": "clinical-note", "display": "Clinical Note"}], "text": "Clinical Note"}]),
        );
        set(&mut d, "subject", self.subject());
        let date = if status == "current" {
            visit.end
        } else {
            visit.end.plus_minutes(-30)
        };
        set(&mut d, "date", js!(date.iso()));
        set(&mut d, "author", js!([self.practitioner(author)]));
        set(&mut d, "custodian", self.service_org());
        if let Some(previous) = replaces {
            set(
                &mut d,
                "relatesTo",
                js!([{"code": "replaces", "target": reference("DocumentReference", previous)}]),
            );
        }
        set(&mut d, "content", Value::Array(content));
        set(
            &mut d,
            "context",
            js!({
                "encounter": [reference("Encounter", &visit.id)],
                "period": {"start": visit.start.iso(), "end": visit.end.iso()},
            }),
        );
        self.emit(d, date, author);
        id
    }

    /// A random (version 4 layout) UUID from this patient's stream.
    pub fn uuid(&mut self) -> String {
        let a = self.rng.next_u64();
        let b = self.rng.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    /// An image attached to a report (e.g. an EKG tracing); returns its id. The picture is a
    /// 1x1 PNG: the point is the Media/link structure, not the pixels.
    pub(super) fn media(&mut self, visit: &Visit, title: &str, performer: usize) -> String {
        const PIXEL_PNG: &str =
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";
        let id = self.id("media");
        let mut m = resource("Media", &id, None);
        set(&mut m, "status", js!("completed"));
        set(
            &mut m,
            "type",
            simple_concept(
                "http://terminology.hl7.org/CodeSystem/media-type",
                "image",
                "Image",
            ),
        );
        set(&mut m, "subject", self.subject());
        set(&mut m, "encounter", reference("Encounter", &visit.id));
        let at = visit.start.plus_minutes(40);
        set(&mut m, "createdDateTime", js!(at.iso()));
        set(&mut m, "operator", self.practitioner(performer));
        set(
            &mut m,
            "content",
            js!({"contentType": "image/png", "data": PIXEL_PNG, "title": title}),
        );
        self.emit(m, at, performer);
        id
    }

    /// A narrative report (DiagnosticReport note profile) with its text as presentedForm.
    pub(super) fn note_report(&mut self, visit: &Visit, report: NoteReport<'_>) {
        let NoteReport {
            category,
            code,
            results,
            text,
            performer,
            media,
        } = report;
        let id = self.id("dr");
        let mut r = resource(
            "DiagnosticReport",
            &id,
            Some("us-core-diagnosticreport-note"),
        );
        set(&mut r, "status", js!("final"));
        set(&mut r, "category", js!([concept(category)]));
        set(&mut r, "code", concept(code));
        set(&mut r, "subject", self.subject());
        set(&mut r, "encounter", reference("Encounter", &visit.id));
        let effective = visit.start.plus_minutes(45);
        set(&mut r, "effectiveDateTime", js!(effective.iso()));
        let issued = effective.plus_minutes(180);
        set(&mut r, "issued", js!(issued.iso()));
        set(
            &mut r,
            "performer",
            js!([self.practitioner(performer), self.service_org()]),
        );
        if !results.is_empty() {
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
        }
        if let Some(media) = media {
            set(
                &mut r,
                "media",
                js!([{"comment": "Tracing", "link": reference("Media", media)}]),
            );
        }
        set(&mut r, "conclusion", js!(text));
        set(
            &mut r,
            "presentedForm",
            js!([{"contentType": "text/plain", "language": "en-US", "data": base64(text.as_bytes()), "title": code.display}]),
        );
        self.emit(r, issued, performer);
    }
}

/// What a narrative DiagnosticReport says and who signed it.
pub(super) struct NoteReport<'a> {
    pub category: &'a Code,
    pub code: &'a Code,
    pub results: &'a [String],
    pub text: &'a str,
    pub performer: usize,
    pub media: Option<&'a str>,
}

fn unit_display(code: &str) -> &'static str {
    match code {
        "{tbl}" => "tablet",
        "{cap}" => "capsule",
        "{puff}" => "puff",
        "mL" => "mL",
        _ => "unit",
    }
}

fn dosage(drug: &Drug) -> Value {
    js!({
        "text": drug.sig,
        "timing": {"repeat": {"frequency": drug.per_day, "period": 1, "periodUnit": "d"}},
        "route": simple_concept(codes::SNOMED, if drug.dose_unit == "{puff}" { "447694001" } else { "26643006" }, if drug.dose_unit == "{puff}" { "Respiratory tract route (qualifier value)" } else { "Oral route (qualifier value)" }),
        "doseAndRate": [{
            "type": simple_concept("http://terminology.hl7.org/CodeSystem/dose-rate-type", "ordered", "Ordered"),
            "doseQuantity": quantity(drug.dose, unit_display(drug.dose_unit), drug.dose_unit),
        }],
    })
}

fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
