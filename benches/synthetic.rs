//! Generation throughput in resources per second: building the JSON values; building plus
//! serializing them as NDJSON lines in memory; and `sphere::generate::write_output` writing the
//! files to disk in both formats (what `sphere generate` does).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sphere::generate::{write_output, OutputFormat};
use sphere_domain::synthetic::{generate, GenerateConfig};

fn synthetic(c: &mut Criterion) {
    let config = GenerateConfig {
        patients: 50,
        ..GenerateConfig::default()
    };
    let mut count = 0u64;
    generate(&config, &mut |_| count += 1);

    let mut group = c.benchmark_group("synthetic");
    group.throughput(Throughput::Elements(count));
    group.sample_size(10);
    group.bench_function("generate_50_patients", |b| {
        b.iter(|| {
            let mut n = 0u64;
            generate(&config, &mut |r| {
                n += 1;
                std::hint::black_box(r);
            });
            n
        })
    });
    group.bench_function("generate_and_serialize_50_patients", |b| {
        let mut buffer: Vec<u8> = Vec::with_capacity(64 << 20);
        b.iter(|| {
            buffer.clear();
            generate(&config, &mut |r| {
                // A Vec<u8> writer cannot fail.
                serde_json::to_writer(&mut buffer, &r).expect("serialize into memory");
                buffer.push(b'\n');
            });
            buffer.len()
        })
    });
    for (name, format) in [
        ("write_ndjson_50_patients", OutputFormat::Ndjson),
        ("write_bundles_50_patients", OutputFormat::Bundles),
    ] {
        let dir = tempfile::tempdir().expect("temporary directory");
        group.bench_function(name, |b| {
            b.iter(|| write_output(&config, dir.path(), format).expect("writes the population"))
        });
    }
    group.finish();
}

criterion_group!(benches, synthetic);
criterion_main!(benches);
