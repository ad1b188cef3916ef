//! The small tables of real codes the generator draws from.
//!
//! One table per clinical concept, each entry a real code from its code system (LOINC, SNOMED CT,
//! RxNorm, CVX, ICD-10-CM, NUCC, UCUM). The lists are short on purpose: they exist to exercise the
//! US Core 6.1.0 profiles and searches, not to model epidemiology.

/// A coded concept: system, code, display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub system: &'static str,
    pub code: &'static str,
    pub display: &'static str,
}

const fn c(system: &'static str, code: &'static str, display: &'static str) -> Code {
    Code {
        system,
        code,
        display,
    }
}

pub const LOINC: &str = "http://loinc.org";
pub const SNOMED: &str = "http://snomed.info/sct";
pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
pub const CVX: &str = "http://hl7.org/fhir/sid/cvx";
pub const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
pub const NUCC: &str = "http://nucc.org/provider-taxonomy";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const CDC_RACE: &str = "urn:oid:2.16.840.1.113883.6.238";
pub const NULL_FLAVOR: &str = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor";
pub const OBS_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
pub const US_CORE_CATEGORY: &str = "http://hl7.org/fhir/us/core/CodeSystem/us-core-category";
pub const CONDITION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
pub const US_CORE_CONDITION_CATEGORY: &str =
    "http://hl7.org/fhir/us/core/CodeSystem/condition-category";
pub const DATA_ABSENT: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";
pub const ODH: &str = "http://terminology.hl7.org/CodeSystem/PHOccupationalDataForHealthODH";

/// A chronic or acute condition: the SNOMED CT concept with its ICD-10-CM equivalent.
#[derive(Debug, Clone, Copy)]
pub struct ConditionCode {
    pub snomed: Code,
    pub icd10: Code,
}

const fn cond(
    sct: &'static str,
    sct_display: &'static str,
    icd: &'static str,
    icd_display: &'static str,
) -> ConditionCode {
    ConditionCode {
        snomed: c(SNOMED, sct, sct_display),
        icd10: c(ICD10CM, icd, icd_display),
    }
}

pub const DIABETES_T2: ConditionCode = cond(
    "44054006",
    "Diabetes mellitus type 2 (disorder)",
    "E11.9",
    "Type 2 diabetes mellitus without complications",
);
pub const HYPERTENSION: ConditionCode = cond(
    "38341003",
    "Hypertensive disorder, systemic arterial (disorder)",
    "I10",
    "Essential (primary) hypertension",
);
pub const HYPERLIPIDEMIA: ConditionCode = cond(
    "55822004",
    "Hyperlipidemia (disorder)",
    "E78.5",
    "Hyperlipidemia, unspecified",
);
pub const ASTHMA: ConditionCode = cond(
    "195967001",
    "Asthma (disorder)",
    "J45.909",
    "Unspecified asthma, uncomplicated",
);
pub const DEPRESSION: ConditionCode = cond(
    "35489007",
    "Depressive disorder (disorder)",
    "F32.A",
    "Depression, unspecified",
);
pub const COPD: ConditionCode = cond(
    "13645005",
    "Chronic obstructive lung disease (disorder)",
    "J44.9",
    "Chronic obstructive pulmonary disease, unspecified",
);
pub const GERD: ConditionCode = cond(
    "235595009",
    "Gastroesophageal reflux disease (disorder)",
    "K21.9",
    "Gastro-esophageal reflux disease without esophagitis",
);

/// Acute problems diagnosed at a visit (encounter-diagnosis).
pub const ACUTE_CONDITIONS: &[ConditionCode] = &[
    cond(
        "10509002",
        "Acute bronchitis (disorder)",
        "J20.9",
        "Acute bronchitis, unspecified",
    ),
    cond(
        "444814009",
        "Viral sinusitis (disorder)",
        "J01.90",
        "Acute sinusitis, unspecified",
    ),
    cond(
        "43878008",
        "Streptococcal sore throat (disorder)",
        "J02.0",
        "Streptococcal pharyngitis",
    ),
    cond(
        "68566005",
        "Urinary tract infectious disease (disorder)",
        "N39.0",
        "Urinary tract infection, site not specified",
    ),
    cond(
        "65363002",
        "Otitis media (disorder)",
        "H66.90",
        "Otitis media, unspecified, unspecified ear",
    ),
    cond(
        "44465007",
        "Sprain of ankle (disorder)",
        "S93.409A",
        "Sprain of unspecified ligament of unspecified ankle, initial encounter",
    ),
];

/// Social determinants of health recorded as problems / health concerns.
pub const SDOH_CONDITIONS: &[ConditionCode] = &[
    cond(
        "733423003",
        "Food insecurity (finding)",
        "Z59.41",
        "Food insecurity",
    ),
    cond(
        "73595000",
        "Stress (finding)",
        "Z73.3",
        "Stress, not elsewhere classified",
    ),
    cond(
        "160903007",
        "Lives alone (finding)",
        "Z60.2",
        "Problems related to living alone",
    ),
];

pub const ADULT_VACCINES: &[Code] = &[
    c(CVX, "140", "Influenza, seasonal, injectable, preservative free"),
    c(CVX, "208", "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose"),
    c(CVX, "115", "Tdap"),
    c(CVX, "133", "Pneumococcal conjugate PCV 13"),
    c(CVX, "33", "pneumococcal polysaccharide vaccine, 23 valent"),
];

pub const CHILD_VACCINES: &[Code] = &[
    c(CVX, "08", "Hep B, adolescent or pediatric"),
    c(CVX, "20", "DTaP"),
    c(CVX, "10", "IPV"),
    c(CVX, "03", "MMR"),
    c(CVX, "21", "varicella"),
    c(CVX, "83", "Hep A, ped/adol, 2 dose"),
    c(
        CVX,
        "140",
        "Influenza, seasonal, injectable, preservative free",
    ),
];

/// A drug product and the condition it usually treats (by SNOMED code, to link reasonReference).
#[derive(Debug, Clone, Copy)]
pub struct Drug {
    pub rxnorm: Code,
    pub dose: f64,
    pub dose_unit: &'static str,
    pub sig: &'static str,
    pub per_day: u32,
}

const fn drug(
    code: &'static str,
    display: &'static str,
    dose: f64,
    dose_unit: &'static str,
    sig: &'static str,
    per_day: u32,
) -> Drug {
    Drug {
        rxnorm: c(RXNORM, code, display),
        dose,
        dose_unit,
        sig,
        per_day,
    }
}

pub const METFORMIN: Drug = drug(
    "860975",
    "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet",
    1.0,
    "{tbl}",
    "Take 1 tablet by mouth once daily with the evening meal",
    1,
);
pub const LISINOPRIL: Drug = drug(
    "314076",
    "lisinopril 10 MG Oral Tablet",
    1.0,
    "{tbl}",
    "Take 1 tablet by mouth once daily",
    1,
);
pub const ATORVASTATIN: Drug = drug(
    "259255",
    "atorvastatin 80 MG Oral Tablet",
    1.0,
    "{tbl}",
    "Take 1 tablet by mouth at bedtime",
    1,
);
pub const ALBUTEROL: Drug = drug(
    "745679",
    "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
    2.0,
    "{puff}",
    "Inhale 2 puffs every 4 to 6 hours as needed for wheezing",
    4,
);
pub const AMLODIPINE: Drug = drug(
    "197361",
    "amlodipine 5 MG Oral Tablet",
    1.0,
    "{tbl}",
    "Take 1 tablet by mouth once daily",
    1,
);
pub const AMOXICILLIN: Drug = drug(
    "308182",
    "amoxicillin 250 MG Oral Capsule",
    2.0,
    "{cap}",
    "Take 2 capsules by mouth every 8 hours for 10 days",
    3,
);
pub const IBUPROFEN: Drug = drug(
    "310965",
    "ibuprofen 200 MG Oral Tablet",
    2.0,
    "{tbl}",
    "Take 2 tablets by mouth every 6 hours as needed for pain",
    4,
);
pub const ACETAMINOPHEN: Drug = drug(
    "313782",
    "acetaminophen 325 MG Oral Tablet",
    2.0,
    "{tbl}",
    "Take 2 tablets by mouth every 6 hours as needed for fever",
    4,
);
pub const CETIRIZINE: Drug = drug(
    "1014676",
    "cetirizine hydrochloride 5 MG Oral Tablet",
    1.0,
    "{tbl}",
    "Take 1 tablet by mouth once daily",
    1,
);
pub const NIZATIDINE: Drug = drug(
    "476872",
    "nizatidine 15 MG/ML Oral Solution",
    10.0,
    "mL",
    "Take 10 mL by mouth twice daily",
    2,
);

pub const ALLERGENS: &[Code] = &[
    c(RXNORM, "7980", "penicillin G"),
    c(RXNORM, "1191", "aspirin"),
    c(RXNORM, "2670", "codeine"),
    c(SNOMED, "762952008", "Peanut (substance)"),
    c(SNOMED, "111088007", "Latex (substance)"),
    c(SNOMED, "227493005", "Cashew nut (substance)"),
];

pub const REACTIONS: &[Code] = &[
    c(SNOMED, "247472004", "Wheal (finding)"),
    c(SNOMED, "271807003", "Eruption of skin (disorder)"),
    c(SNOMED, "39579001", "Anaphylaxis (disorder)"),
    c(SNOMED, "422587007", "Nausea (finding)"),
    c(SNOMED, "267036007", "Dyspnea (finding)"),
];

pub const PROCEDURES: &[Code] = &[
    c(SNOMED, "73761001", "Colonoscopy (procedure)"),
    c(SNOMED, "80146002", "Excision of appendix (procedure)"),
    c(SNOMED, "430193006", "Medication reconciliation (procedure)"),
    c(SNOMED, "171207006", "Depression screening (procedure)"),
    c(SNOMED, "398171003", "Hearing examination (procedure)"),
];

pub const PACEMAKER_IMPLANT: Code = c(
    SNOMED,
    "307280005",
    "Implantation of cardiac pacemaker (procedure)",
);
pub const PACEMAKER: Code = c(
    SNOMED,
    "14106009",
    "Cardiac pacemaker, device (physical object)",
);
pub const HIP_PROSTHESIS: Code = c(
    SNOMED,
    "468063009",
    "Coated femoral stem prosthesis, modular (physical object)",
);
pub const HIP_REPLACEMENT: Code = c(SNOMED, "52734007", "Total replacement of hip (procedure)");

pub const FOOD_PANTRY_REFERRAL: Code = c(
    SNOMED,
    "467771000124109",
    "Assistance with application for food pantry program (procedure)",
);

pub const ENCOUNTER_CHECKUP: Code = c(SNOMED, "185349003", "Encounter for check up (procedure)");
pub const ENCOUNTER_SYMPTOM: Code = c(SNOMED, "185345009", "Encounter for symptom (procedure)");
pub const ENCOUNTER_EMERGENCY: Code = c(SNOMED, "50849002", "Emergency room admission (procedure)");
pub const ENCOUNTER_INPATIENT: Code = c(SNOMED, "32485007", "Hospital admission (procedure)");
pub const ENCOUNTER_TELEHEALTH: Code = c(
    SNOMED,
    "448337001",
    "Telemedicine consultation with patient (procedure)",
);

/// A laboratory analyte with its UCUM unit and normal range.
#[derive(Debug, Clone, Copy)]
pub struct Analyte {
    pub loinc: Code,
    pub unit: &'static str,
    pub low: f64,
    pub high: f64,
    pub decimals: i32,
}

const fn analyte(
    code: &'static str,
    display: &'static str,
    unit: &'static str,
    low: f64,
    high: f64,
    decimals: i32,
) -> Analyte {
    Analyte {
        loinc: c(LOINC, code, display),
        unit,
        low,
        high,
        decimals,
    }
}

pub struct Panel {
    pub loinc: Code,
    pub analytes: &'static [Analyte],
    pub specimen: Code,
}

pub const SERUM: Code = c(SNOMED, "119364003", "Serum specimen (specimen)");
pub const BLOOD: Code = c(SNOMED, "119297000", "Blood specimen (specimen)");
pub const URINE: Code = c(SNOMED, "122575003", "Urine specimen (specimen)");
pub const NP_SWAB: Code = c(SNOMED, "258500001", "Nasopharyngeal swab (specimen)");

pub const CBC: Panel = Panel {
    loinc: c(LOINC, "58410-2", "CBC panel - Blood by Automated count"),
    analytes: &[
        analyte(
            "6690-2",
            "Leukocytes [#/volume] in Blood by Automated count",
            "10*3/uL",
            4.5,
            11.0,
            1,
        ),
        analyte(
            "789-8",
            "Erythrocytes [#/volume] in Blood by Automated count",
            "10*6/uL",
            4.2,
            5.9,
            2,
        ),
        analyte(
            "718-7",
            "Hemoglobin [Mass/volume] in Blood",
            "g/dL",
            12.0,
            17.5,
            1,
        ),
        analyte(
            "4544-3",
            "Hematocrit [Volume Fraction] of Blood by Automated count",
            "%",
            36.0,
            50.0,
            1,
        ),
        analyte(
            "777-3",
            "Platelets [#/volume] in Blood by Automated count",
            "10*3/uL",
            150.0,
            400.0,
            0,
        ),
    ],
    specimen: BLOOD,
};

pub const BMP: Panel = Panel {
    loinc: c(LOINC, "51990-0", "Basic metabolic panel - Blood"),
    analytes: &[
        analyte(
            "2345-7",
            "Glucose [Mass/volume] in Serum or Plasma",
            "mg/dL",
            70.0,
            99.0,
            0,
        ),
        analyte(
            "3094-0",
            "Urea nitrogen [Mass/volume] in Serum or Plasma",
            "mg/dL",
            7.0,
            20.0,
            0,
        ),
        analyte(
            "2160-0",
            "Creatinine [Mass/volume] in Serum or Plasma",
            "mg/dL",
            0.6,
            1.3,
            2,
        ),
        analyte(
            "2951-2",
            "Sodium [Moles/volume] in Serum or Plasma",
            "mmol/L",
            136.0,
            145.0,
            0,
        ),
        analyte(
            "2823-3",
            "Potassium [Moles/volume] in Serum or Plasma",
            "mmol/L",
            3.5,
            5.1,
            1,
        ),
        analyte(
            "2075-0",
            "Chloride [Moles/volume] in Serum or Plasma",
            "mmol/L",
            98.0,
            107.0,
            0,
        ),
        analyte(
            "2028-9",
            "Carbon dioxide, total [Moles/volume] in Serum or Plasma",
            "mmol/L",
            22.0,
            29.0,
            0,
        ),
        analyte(
            "17861-6",
            "Calcium [Mass/volume] in Serum or Plasma",
            "mg/dL",
            8.6,
            10.3,
            1,
        ),
    ],
    specimen: SERUM,
};

pub const LIPIDS: Panel = Panel {
    loinc: c(
        LOINC,
        "57698-3",
        "Lipid panel with direct LDL - Serum or Plasma",
    ),
    analytes: &[
        analyte(
            "2093-3",
            "Cholesterol [Mass/volume] in Serum or Plasma",
            "mg/dL",
            125.0,
            200.0,
            0,
        ),
        analyte(
            "2571-8",
            "Triglyceride [Mass/volume] in Serum or Plasma",
            "mg/dL",
            40.0,
            150.0,
            0,
        ),
        analyte(
            "2085-9",
            "Cholesterol in HDL [Mass/volume] in Serum or Plasma",
            "mg/dL",
            40.0,
            80.0,
            0,
        ),
        analyte(
            "18262-6",
            "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay",
            "mg/dL",
            50.0,
            130.0,
            0,
        ),
    ],
    specimen: SERUM,
};

pub const HBA1C: Analyte = analyte(
    "4548-4",
    "Hemoglobin A1c/Hemoglobin.total in Blood",
    "%",
    4.0,
    5.6,
    1,
);
pub const SARS_COV_2: Code = c(LOINC, "94500-6", "SARS-CoV-2 (COVID-19) RNA [Presence] in Respiratory system specimen by NAA with probe detection");
pub const NEGATIVE: Code = c(SNOMED, "260385009", "Negative (qualifier value)");
pub const POSITIVE: Code = c(SNOMED, "10828004", "Positive (qualifier value)");
pub const URINE_COLOR: Code = c(LOINC, "5778-6", "Color of Urine");
pub const URINALYSIS: Code = c(LOINC, "24356-8", "Urinalysis complete panel - Urine");

pub const SMOKING_STATUS: Code = c(LOINC, "72166-2", "Tobacco smoking status");
pub const SMOKING_VALUES: &[Code] = &[
    c(SNOMED, "266919005", "Never smoked tobacco (finding)"),
    c(SNOMED, "8517006", "Ex-smoker (finding)"),
    c(SNOMED, "449868002", "Smokes tobacco daily (finding)"),
    c(
        SNOMED,
        "428041000124106",
        "Occasional tobacco smoker (finding)",
    ),
];

pub const SEXUAL_ORIENTATION: Code = c(LOINC, "76690-7", "Sexual orientation");
pub const SEXUAL_ORIENTATION_VALUES: &[Code] = &[
    c(SNOMED, "20430005", "Heterosexual (finding)"),
    c(SNOMED, "38628009", "Homosexual (finding)"),
    c(SNOMED, "42035005", "Bisexual (finding)"),
    c(NULL_FLAVOR, "UNK", "Unknown"),
];

pub const GENDER_IDENTITY_VALUES: &[Code] = &[
    c(
        SNOMED,
        "446141000124107",
        "Identifies as female gender (finding)",
    ),
    c(
        SNOMED,
        "446151000124109",
        "Identifies as male gender (finding)",
    ),
    c(
        SNOMED,
        "33791000087105",
        "Identifies as nonbinary gender (finding)",
    ),
    c(NULL_FLAVOR, "ASKU", "Asked but no answer"),
];

pub const PREGNANCY_STATUS: Code = c(LOINC, "82810-3", "Pregnancy status");
pub const PREGNANCY_STATUS_VALUES: &[Code] = &[
    c(SNOMED, "60001007", "Not pregnant (finding)"),
    c(SNOMED, "77386006", "Pregnant (finding)"),
    c(NULL_FLAVOR, "UNK", "Unknown"),
];
pub const PREGNANCY_INTENT: Code = c(
    LOINC,
    "86645-9",
    "Pregnancy intention in the next year - Reported",
);
pub const PREGNANCY_INTENT_VALUES: &[Code] = &[
    c(
        SNOMED,
        "454381000124105",
        "Not sure of desire to become pregnant (finding)",
    ),
    c(
        SNOMED,
        "454391000124108",
        "Ambivalent about becoming pregnant (finding)",
    ),
    c(
        SNOMED,
        "454401000124105",
        "No desire to become pregnant (finding)",
    ),
    c(
        SNOMED,
        "454411000124108",
        "Wants to become pregnant (finding)",
    ),
];

pub const OCCUPATION: Code = c(LOINC, "11341-5", "History of Occupation");
pub const INDUSTRY: Code = c(LOINC, "86188-0", "History of Occupation Industry");
/// Occupation and its industry, from the CDC Occupational Data for Health code system.
pub const OCCUPATIONS: &[(Code, Code)] = &[(
    c(
        ODH,
        "31-1014.00.007136",
        "Certified Nursing Assistant (CNA) [Nursing Assistants]",
    ),
    c(ODH, "621610.008495", "Home nursing services"),
)];

pub const TREATMENT_PREFERENCE: Code = c(
    LOINC,
    "75773-2",
    "Goals, preferences, and priorities for medical treatment [Reported]",
);
pub const CARE_EXPERIENCE_PREFERENCE: Code = c(LOINC, "95541-9", "Care experience preference");
pub const TRANSPORT_TOO_EXPENSIVE: Code =
    c(SNOMED, "160695008", "Transport too expensive (finding)");
pub const DEPRESSION_SEVERITY: Code = c(LOINC, "94023-9", "Depression severity");
pub const EKG_IMPRESSION: Code = c(LOINC, "8601-7", "EKG impression");
pub const XR_IMPRESSION: Code = c(
    LOINC,
    "19005-8",
    "Radiology Imaging study [Impression] (narrative)",
);

/// Screening instruments: Hunger Vital Sign (SDOH) and PHQ-2 (depression).
pub const HVS_PANEL: Code = c(LOINC, "88121-9", "Hunger Vital Sign [HVS]");
pub const HVS_WORRIED: Code = c(LOINC, "88122-7", "Within the past 12 months we worried whether our food would run out before we got money to buy more [U.S. FSS]");
pub const HVS_DIDNT_LAST: Code = c(LOINC, "88123-5", "Within the past 12 months the food we bought just didn't last and we didn't have money to get more [U.S. FSS]");
pub const HVS_RISK: Code = c(LOINC, "88124-3", "Food insecurity risk [HVS]");
pub const OFTEN_TRUE: Code = c(LOINC, "LA28397-0", "Often true");
pub const SOMETIMES_TRUE: Code = c(LOINC, "LA6729-3", "Sometimes true");
pub const NEVER_TRUE: Code = c(LOINC, "LA28398-8", "Never true");
pub const AT_RISK: Code = c(LOINC, "LA19952-3", "At risk");
pub const NO_RISK: Code = c(LOINC, "LA19983-8", "No risk");
pub const PHQ2_PANEL: Code = c(
    LOINC,
    "55757-9",
    "Patient Health Questionnaire 2 item (PHQ-2) [Reported]",
);
pub const PHQ2_INTEREST: Code = c(
    LOINC,
    "44250-9",
    "Little interest or pleasure in doing things",
);
pub const PHQ2_DOWN: Code = c(LOINC, "44255-8", "Feeling down, depressed, or hopeless");
pub const PHQ2_TOTAL: Code = c(
    LOINC,
    "55758-7",
    "Patient Health Questionnaire 2 item (PHQ-2) total score [Reported]",
);
pub const PHQ_ANSWERS: &[Code] = &[
    c(LOINC, "LA6568-5", "Not at all"),
    c(LOINC, "LA6569-3", "Several days"),
    c(LOINC, "LA6570-1", "More than half the days"),
    c(LOINC, "LA6571-9", "Nearly every day"),
];

/// Clinical notes: every US Core 6.1.0 "common clinical note" type.
pub const CONSULT_NOTE: Code = c(LOINC, "11488-4", "Consult note");
pub const DISCHARGE_SUMMARY: Code = c(LOINC, "18842-5", "Discharge summary");
pub const HISTORY_AND_PHYSICAL: Code = c(LOINC, "34117-2", "History and physical note");
pub const PROCEDURE_NOTE: Code = c(LOINC, "28570-0", "Procedure note");
pub const PROGRESS_NOTE: Code = c(LOINC, "11506-3", "Progress note");

pub const RADIOLOGY: Code = c(LOINC, "LP29684-5", "Radiology");
pub const CARDIOLOGY: Code = c(LOINC, "LP29708-2", "Cardiology");
pub const PATHOLOGY: Code = c(LOINC, "LP7839-6", "Pathology");
pub const CHEST_XRAY: Code = c(LOINC, "30746-2", "Portable XR Chest Views");
pub const EKG_PANEL: Code = c(
    LOINC,
    "45033-8",
    "Cardiovascular physiologic and EKG assessment panel",
);
pub const PATHOLOGY_REPORT: Code = c(LOINC, "60567-5", "Comprehensive pathology report panel");

pub const NUCC_FAMILY_MEDICINE: Code = c(NUCC, "207Q00000X", "Family Medicine Physician");
pub const NUCC_INTERNAL_MEDICINE: Code = c(NUCC, "207R00000X", "Internal Medicine Physician");
pub const NUCC_PEDIATRICS: Code = c(NUCC, "208000000X", "Pediatrics Physician");
pub const NUCC_CARDIOLOGY: Code = c(NUCC, "207RC0000X", "Cardiovascular Disease Physician");
pub const NUCC_NURSE_PRACTITIONER: Code = c(NUCC, "363L00000X", "Nurse Practitioner");
pub const NUCC_PHARMACIST: Code = c(NUCC, "183500000X", "Pharmacist");

pub const PRIMARY_CARE_PROVIDER: Code = c(
    SNOMED,
    "453231000124104",
    "Primary care provider (occupation)",
);
pub const CAREGIVER: Code = c(SNOMED, "133932002", "Caregiver (person)");
pub const CARDIOLOGIST: Code = c(SNOMED, "17561000", "Cardiologist (occupation)");

pub struct Race {
    pub omb: Code,
    pub detailed: Code,
}

pub const RACES: &[Race] = &[
    Race {
        omb: c(CDC_RACE, "2106-3", "White"),
        detailed: c(CDC_RACE, "2108-9", "European"),
    },
    Race {
        omb: c(CDC_RACE, "2054-5", "Black or African American"),
        detailed: c(CDC_RACE, "2058-6", "African American"),
    },
    Race {
        omb: c(CDC_RACE, "2028-9", "Asian"),
        detailed: c(CDC_RACE, "2036-2", "Filipino"),
    },
    Race {
        omb: c(CDC_RACE, "1002-5", "American Indian or Alaska Native"),
        detailed: c(CDC_RACE, "1586-7", "Shoshone"),
    },
    Race {
        omb: c(
            CDC_RACE,
            "2076-8",
            "Native Hawaiian or Other Pacific Islander",
        ),
        detailed: c(CDC_RACE, "2079-2", "Native Hawaiian"),
    },
];

pub const HISPANIC: Code = c(CDC_RACE, "2135-2", "Hispanic or Latino");
pub const NOT_HISPANIC: Code = c(CDC_RACE, "2186-5", "Not Hispanic or Latino");
pub const HISPANIC_DETAILED: &[Code] = &[
    c(CDC_RACE, "2148-5", "Mexican"),
    c(CDC_RACE, "2180-8", "Puerto Rican"),
    c(CDC_RACE, "2184-0", "Dominican"),
];

pub const TRIBE: Code = c(
    "http://terminology.hl7.org/CodeSystem/v3-TribalEntityUS",
    "187",
    "Paiute-Shoshone Tribe of the Fallon Reservation and Colony, Nevada",
);

pub const LANGUAGES: &[Code] = &[
    c("urn:ietf:bcp:47", "en", "English"),
    c("urn:ietf:bcp:47", "es", "Spanish"),
    c("urn:ietf:bcp:47", "vi", "Vietnamese"),
    c("urn:ietf:bcp:47", "zh", "Chinese"),
];

pub const GIVEN_FEMALE: &[&str] = &[
    "Amy", "Maria", "Linda", "Grace", "Aisha", "Mei", "Sofia", "Hannah", "Rosa", "Leilani", "Ruth",
    "Nora",
];
pub const GIVEN_MALE: &[&str] = &[
    "James", "Carlos", "Wei", "Daniel", "Malik", "Ethan", "Noah", "Samuel", "Kai", "Luis", "Omar",
    "Peter",
];
pub const FAMILY_NAMES: &[&str] = &[
    "Shaw", "Garcia", "Nguyen", "Johnson", "Okafor", "Chen", "Martinez", "Smith", "Kahale",
    "Begay", "Patel", "Kowalski", "Haddad", "Brown", "Rossi", "Yamamoto",
];
pub const STREETS: &[&str] = &[
    "Maple Street",
    "Oak Avenue",
    "Elm Road",
    "Cedar Lane",
    "Washington Street",
    "Lake Drive",
    "Hillside Avenue",
    "River Road",
    "Park Place",
    "Sunset Boulevard",
];

/// Real US cities with a ZIP code in them; street addresses are invented.
pub const CITIES: &[(&str, &str, &str)] = &[
    ("Boston", "MA", "02118"),
    ("Springfield", "IL", "62701"),
    ("Austin", "TX", "78701"),
    ("Madison", "WI", "53703"),
    ("Denver", "CO", "80202"),
    ("Portland", "OR", "97205"),
    ("Columbus", "OH", "43215"),
    ("Raleigh", "NC", "27601"),
    ("Phoenix", "AZ", "85004"),
    ("Albany", "NY", "12207"),
];
