//! `sphere import` throughput: a generated population (transaction Bundles per patient, and
//! NDJSON per type) imported into a fresh SQLite log through `sphere::import`, with every
//! projection (search index, statistics, token status) running, timed until the projections
//! have caught up. Then the same files again (every resource unchanged).
//!
//! `cargo bench --bench import` (SPHERE_BENCH_PATIENTS, default 200 ≈ 78,000 resources).

use std::path::Path;
use std::time::{Duration, Instant};

use sphere::app::App;
use sphere::config::{Config, Overrides};
use sphere::generate::{write_output, OutputFormat};
use sphere::import::{self, Options, Target};
use sphere_domain::synthetic::GenerateConfig;

async fn run(files_dir: &Path, data_dir: &Path, label: &str) {
    let config = Config::load(&Overrides {
        config_file: None,
        data_dir: Some(data_dir.to_owned()),
        listen: None,
    })
    .expect("default configuration");
    let app = App::start(config).await.expect("app");
    let files = import::collect_files(&[files_dir.to_owned()]).expect("files");
    for pass in ["first import", "same files again"] {
        let started = Instant::now();
        let report = import::import_files(Target::app(&app), &files, Options::default(), &())
            .await
            .expect("import");
        let written = started.elapsed();
        if let Some(position) = report.last_position {
            for handle in app.projections() {
                handle
                    .wait_for(position, Duration::from_secs(600))
                    .await
                    .expect("projections catch up");
            }
        }
        let total = started.elapsed();
        assert_eq!(report.rejected, 0, "{:?}", report.problems.first());
        println!(
            "{label}, {pass}: {} resources ({} created, {} unchanged): written in {:.2}s ({:.0}/s), projections caught up at {:.2}s = {:.0} resources/s",
            report.resources,
            report.created,
            report.unchanged,
            written.as_secs_f64(),
            report.resources as f64 / written.as_secs_f64(),
            total.as_secs_f64(),
            report.resources as f64 / total.as_secs_f64()
        );
    }
    app.shutdown().await;
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let patients: u32 = std::env::var("SPHERE_BENCH_PATIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let root = tempfile::tempdir().expect("temporary directory");
    let population = GenerateConfig {
        patients,
        ..GenerateConfig::default()
    };
    for (label, format) in [
        ("bundles", OutputFormat::Bundles),
        ("ndjson", OutputFormat::Ndjson),
    ] {
        let files = root.path().join(label).join("files");
        let summary = write_output(&population, &files, format).expect("generate");
        println!(
            "{label}: {patients} patients, {} resources in {} files",
            summary.resources,
            summary.files.len()
        );
        runtime.block_on(run(&files, &root.path().join(label).join("data"), label));
    }
}
