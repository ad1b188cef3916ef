//! The resources every patient record points at: the service's own Organization, a lab, payers,
//! a pharmacy, Practitioners with their roles, Locations and a Direct Endpoint.

use serde_json::Value;

use super::codes::{self, Code};
use super::datatypes::{concept, npi, reference, resource, set, simple_concept};
use super::rng::SplitMix64;
use super::{id_prefix, GenerateConfig, SERVICE_ORGANIZATION_ID};

/// The practitioners of the synthetic health system, in a fixed order so patients can pick them
/// by role.
pub const PRACTITIONERS: &[(&str, &str, &Code)] = &[
    ("Ronald", "Bone", &codes::NUCC_FAMILY_MEDICINE),
    ("Kathy", "Fielding", &codes::NUCC_INTERNAL_MEDICINE),
    ("Priya", "Raman", &codes::NUCC_PEDIATRICS),
    ("Jorge", "Alvarez", &codes::NUCC_CARDIOLOGY),
    ("Nia", "Washington", &codes::NUCC_NURSE_PRACTITIONER),
    ("Doug", "Dispenser", &codes::NUCC_PHARMACIST),
];

pub const FAMILY_MEDICINE: usize = 0;
pub const INTERNAL_MEDICINE: usize = 1;
pub const PEDIATRICS: usize = 2;
pub const CARDIOLOGY: usize = 3;
pub const NURSE_PRACTITIONER: usize = 4;
pub const PHARMACIST: usize = 5;

/// Ids of the shared resources for one seed.
#[derive(Debug, Clone)]
pub struct SharedIds {
    prefix: String,
}

impl SharedIds {
    pub fn new(config: &GenerateConfig) -> Self {
        Self {
            prefix: id_prefix(config),
        }
    }
    pub fn practitioner(&self, k: usize) -> String {
        format!("{}-practitioner-{k}", self.prefix)
    }
    pub fn role(&self, k: usize) -> String {
        format!("{}-role-{k}", self.prefix)
    }
    pub fn lab(&self) -> String {
        format!("{}-org-lab", self.prefix)
    }
    pub fn payer(&self) -> String {
        format!("{}-org-payer", self.prefix)
    }
    pub fn medicaid(&self) -> String {
        format!("{}-org-medicaid", self.prefix)
    }
    pub fn pharmacy(&self) -> String {
        format!("{}-org-pharmacy", self.prefix)
    }
    pub fn clinic(&self) -> String {
        format!("{}-loc-clinic", self.prefix)
    }
    pub fn hospital(&self) -> String {
        format!("{}-loc-hospital", self.prefix)
    }
    pub fn lab_location(&self) -> String {
        format!("{}-loc-lab", self.prefix)
    }
    pub fn endpoint(&self) -> String {
        format!("{}-endpoint-direct", self.prefix)
    }
}

/// Stream id for the shared resources' PRNG; patients use their index, which never reaches it.
const SHARED_STREAM: u64 = u64::MAX;

pub fn emit(config: &GenerateConfig, sink: &mut impl FnMut(Value)) {
    let ids = SharedIds::new(config);
    let mut rng = SplitMix64::derive(config.seed, SHARED_STREAM);

    sink(service_organization());
    sink(organization(
        &ids.lab(),
        "Sphere Reference Laboratory",
        vec![
            js!({"system": "http://hl7.org/fhir/sid/us-npi", "value": npi(rng.below(1_000_000_000))}),
            js!({"system": "urn:oid:2.16.840.1.113883.4.7", "value": format!("22D{:07}", rng.below(10_000_000))}),
        ],
        ("prov", "Healthcare Provider"),
        "Columbus",
        "OH",
        "43215",
    ));
    sink(organization(
        &ids.payer(),
        "Acme Health Plan",
        vec![
            js!({"system": "urn:oid:2.16.840.1.113883.6.300", "value": format!("{:05}", rng.below(100_000))}),
        ],
        ("pay", "Payer"),
        "Hartford",
        "CT",
        "06103",
    ));
    sink(organization(
        &ids.medicaid(),
        "State Medicaid Program",
        vec![
            js!({"system": "urn:oid:2.16.840.1.113883.6.300", "value": format!("{:05}", rng.below(100_000))}),
        ],
        ("govt", "Government"),
        "Boston",
        "MA",
        "02108",
    ));
    sink(organization(
        &ids.pharmacy(),
        "Sphere Community Pharmacy",
        vec![
            js!({"system": "http://hl7.org/fhir/sid/us-npi", "value": npi(rng.below(1_000_000_000))}),
        ],
        ("prov", "Healthcare Provider"),
        "Boston",
        "MA",
        "02118",
    ));

    sink(location(
        &ids.clinic(),
        "Sphere Primary Care Clinic",
        ("OF", "Outpatient facility"),
        "100 Harbor Way",
        42.3398,
        -71.0892,
    ));
    sink(location(
        &ids.hospital(),
        "Sphere General Hospital",
        ("HOSP", "Hospital"),
        "1 Hospital Plaza",
        42.3362,
        -71.1066,
    ));
    sink(location(
        &ids.lab_location(),
        "Sphere Reference Laboratory",
        ("HLAB", "hospital laboratory"),
        "25 Science Park",
        42.3471,
        -71.0820,
    ));

    sink(js!({
        "resourceType": "Endpoint",
        "id": ids.endpoint(),
        "status": "active",
        "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "code": "direct-project", "display": "Direct Project"},
        "name": "Sphere Health System Direct messaging",
        "managingOrganization": reference("Organization", SERVICE_ORGANIZATION_ID),
        "payloadType": [simple_concept("http://terminology.hl7.org/CodeSystem/endpoint-payload-type", "any", "Any")],
        "address": "mailto:clinic@direct.sphere-ehr.example",
    }));

    for (k, (given, family, specialty)) in PRACTITIONERS.iter().enumerate() {
        let npi_value = npi(rng.below(1_000_000_000));
        let mut p = resource(
            "Practitioner",
            &ids.practitioner(k),
            Some("us-core-practitioner"),
        );
        set(
            &mut p,
            "identifier",
            js!([
                {"system": "http://hl7.org/fhir/sid/us-npi", "value": npi_value},
                {"system": "https://sphere-ehr.example/sid/staff", "value": format!("STAFF-{:04}", k + 1)},
            ]),
        );
        set(&mut p, "active", js!(true));
        let suffix = if k == PHARMACIST {
            "PharmD"
        } else if k == NURSE_PRACTITIONER {
            "NP"
        } else {
            "MD"
        };
        set(
            &mut p,
            "name",
            js!([{"use": "official", "family": *family, "given": [*given], "prefix": ["Dr"], "suffix": [suffix]}]),
        );
        set(
            &mut p,
            "telecom",
            js!([
                {"system": "phone", "value": format!("(617) 555-01{:02}", 10 + k), "use": "work"},
                {"system": "email", "value": format!("{}.{}@sphere-ehr.example", given.to_lowercase(), family.to_lowercase()), "use": "work"},
            ]),
        );
        set(
            &mut p,
            "address",
            js!([{"use": "work", "line": ["100 Harbor Way"], "city": "Boston", "state": "MA", "postalCode": "02118", "country": "US"}]),
        );
        set(
            &mut p,
            "qualification",
            js!([{
                "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0360", "code": suffix_degree(suffix), "display": suffix}], "text": suffix},
                "issuer": reference("Organization", SERVICE_ORGANIZATION_ID),
            }]),
        );
        sink(p.into());

        let mut role = resource(
            "PractitionerRole",
            &ids.role(k),
            Some("us-core-practitionerrole"),
        );
        set(&mut role, "active", js!(true));
        set(
            &mut role,
            "practitioner",
            reference("Practitioner", &ids.practitioner(k)),
        );
        set(
            &mut role,
            "organization",
            reference("Organization", SERVICE_ORGANIZATION_ID),
        );
        set(&mut role, "code", js!([concept(specialty)]));
        set(&mut role, "specialty", js!([concept(specialty)]));
        let location = if k == CARDIOLOGY {
            ids.hospital()
        } else {
            ids.clinic()
        };
        set(
            &mut role,
            "location",
            js!([reference("Location", &location)]),
        );
        set(
            &mut role,
            "telecom",
            js!([{"system": "phone", "value": format!("(617) 555-01{:02}", 10 + k), "use": "work"}]),
        );
        set(
            &mut role,
            "endpoint",
            js!([reference("Endpoint", &ids.endpoint())]),
        );
        sink(role.into());
    }
}

fn suffix_degree(suffix: &str) -> &'static str {
    match suffix {
        "PharmD" => "PharmD",
        "NP" => "NP",
        _ => "MD",
    }
}

/// The organization that runs this server. Fixed content (not seeded): it is the same service
/// whatever population is loaded into it.
fn service_organization() -> Value {
    let mut org = resource(
        "Organization",
        SERVICE_ORGANIZATION_ID,
        Some("us-core-organization"),
    );
    set(
        &mut org,
        "identifier",
        js!([{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi(144_700_001)}]),
    );
    set(&mut org, "active", js!(true));
    set(
        &mut org,
        "type",
        js!([simple_concept(
            "http://terminology.hl7.org/CodeSystem/organization-type",
            "prov",
            "Healthcare Provider"
        )]),
    );
    set(&mut org, "name", js!("Sphere Health System"));
    set(
        &mut org,
        "telecom",
        js!([
            {"system": "phone", "value": "(617) 555-0100", "use": "work"},
            {"system": "url", "value": "https://sphere-ehr.example", "use": "work"},
        ]),
    );
    set(
        &mut org,
        "address",
        js!([{"use": "work", "line": ["100 Harbor Way"], "city": "Boston", "state": "MA", "postalCode": "02118", "country": "US"}]),
    );
    org.into()
}

fn organization(
    id: &str,
    name: &str,
    identifiers: Vec<Value>,
    org_type: (&str, &str),
    city: &str,
    state: &str,
    zip: &str,
) -> Value {
    let mut org = resource("Organization", id, Some("us-core-organization"));
    set(&mut org, "identifier", Value::Array(identifiers));
    set(&mut org, "active", js!(true));
    set(
        &mut org,
        "type",
        js!([simple_concept(
            "http://terminology.hl7.org/CodeSystem/organization-type",
            org_type.0,
            org_type.1
        )]),
    );
    set(&mut org, "name", js!(name));
    set(
        &mut org,
        "telecom",
        js!([{"system": "phone", "value": "(617) 555-0150", "use": "work"}]),
    );
    set(
        &mut org,
        "address",
        js!([{"line": ["200 Commerce Street"], "city": city, "state": state, "postalCode": zip, "country": "US"}]),
    );
    // The lab and the pharmacy belong to the health system; payers do not.
    if org_type.0 == "prov" {
        set(
            &mut org,
            "partOf",
            reference("Organization", SERVICE_ORGANIZATION_ID),
        );
    }
    org.into()
}

fn location(id: &str, name: &str, kind: (&str, &str), line: &str, lat: f64, lon: f64) -> Value {
    let mut loc = resource("Location", id, Some("us-core-location"));
    set(&mut loc, "status", js!("active"));
    set(&mut loc, "name", js!(name));
    set(&mut loc, "mode", js!("instance"));
    set(
        &mut loc,
        "type",
        js!([simple_concept(
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            kind.0,
            kind.1
        )]),
    );
    set(
        &mut loc,
        "telecom",
        js!([{"system": "phone", "value": "(617) 555-0160", "use": "work"}]),
    );
    set(
        &mut loc,
        "address",
        js!({"use": "work", "line": [line], "city": "Boston", "state": "MA", "postalCode": "02118", "country": "US"}),
    );
    set(
        &mut loc,
        "position",
        js!({"longitude": lon, "latitude": lat}),
    );
    set(
        &mut loc,
        "managingOrganization",
        reference("Organization", SERVICE_ORGANIZATION_ID),
    );
    loc.into()
}
