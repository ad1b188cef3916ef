//! `sphere generate`: deterministic synthetic populations from the command line.

mod support;

use support::sphere;

fn generate(out: &std::path::Path, seed: &str, format: &str) -> String {
    let result = sphere()
        .args([
            "generate",
            "--patients",
            "3",
            "--seed",
            seed,
            "--format",
            format,
            "--out",
        ])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    String::from_utf8(result.stdout).unwrap()
}

fn contents(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_same_seed_writes_the_same_bytes_and_another_seed_does_not() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("c"),
    );
    let summary = generate(&a, "7", "ndjson");
    assert!(summary.contains("generated 3 patients"), "{summary}");
    assert!(summary.contains("Patient"));
    generate(&b, "7", "ndjson");
    generate(&c, "8", "ndjson");
    assert_eq!(contents(&a), contents(&b));
    assert_ne!(contents(&a), contents(&c));
    let patients = std::fs::read_to_string(a.join("Patient.ndjson")).unwrap();
    assert_eq!(patients.lines().count(), 3);
    for line in patients.lines() {
        let patient: serde_json::Value = serde_json::from_str(line).unwrap();
        let issues = sphere_domain::fhir::validate(&patient);
        assert!(!sphere_domain::fhir::has_errors(&issues), "{issues:?}");
    }
}

#[test]
fn bundles_are_transactions_per_patient() {
    let root = tempfile::tempdir().unwrap();
    generate(root.path(), "1", "bundles");
    let names: Vec<_> = contents(root.path()).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names.iter().filter(|n| n.starts_with("1-patient-")).count(),
        3
    );
    let bundle: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            root.path()
                .join(names.iter().find(|n| n.starts_with("1-")).unwrap()),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(bundle["type"], "transaction");
    assert_eq!(bundle["entry"][0]["request"]["method"], "PUT");
}
