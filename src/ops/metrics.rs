//! Prometheus metrics: request counts and latencies per route and status, event-log appends
//! and commit latency, projection positions and lag, plus gauges other parts register
//! (export jobs, tokens).
//!
//! Hand-written text exposition: a handful of counters and histograms over atomics does not
//! need a metrics framework, and keeps the hot path to one read lock and a few atomic adds.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

/// Histogram bucket bounds in seconds.
const BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A latency histogram over atomics.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds (integral, so it can be an atomic).
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct RouteKey {
    route: String,
    method: String,
    status: u16,
}

/// Event-log counters, incremented by the embedded log's writer.
#[derive(Default)]
pub struct LogMetrics {
    pub append_requests: AtomicU64,
    pub events_appended: AtomicU64,
    pub rejected_appends: AtomicU64,
    pub commits: AtomicU64,
    pub commit_latency: Histogram,
}

/// A gauge some other part of the server reports (export jobs, active tokens...).
pub type GaugeFn = Box<dyn Fn() -> Vec<(String, f64)> + Send + Sync>;

struct Gauge {
    name: String,
    help: String,
    read: GaugeFn,
}

#[derive(Default)]
pub struct Metrics {
    requests: RwLock<HashMap<RouteKey, Arc<Histogram>>>,
    pub log: LogMetrics,
    gauges: Mutex<Vec<Gauge>>,
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    /// Records one answered request.
    pub fn observe_request(&self, path: &str, method: &str, status: u16, elapsed: Duration) {
        let key = RouteKey {
            route: route_of(path),
            method: method.to_owned(),
            status,
        };
        let found = self
            .requests
            .read()
            .ok()
            .and_then(|map| map.get(&key).cloned());
        let histogram = match found {
            Some(h) => h,
            None => match self.requests.write() {
                Ok(mut map) => map.entry(key).or_default().clone(),
                Err(_) => return,
            },
        };
        histogram.observe(elapsed);
    }

    /// Registers a gauge family: `read` returns (label set, value) pairs, labels already
    /// formatted (`kind="running"`), or an empty label string for a single value.
    pub fn register_gauge(&self, name: &str, help: &str, read: GaugeFn) {
        if let Ok(mut gauges) = self.gauges.lock() {
            gauges.retain(|g| g.name != name);
            gauges.push(Gauge {
                name: name.to_owned(),
                help: help.to_owned(),
                read,
            });
        }
    }

    /// The text exposition of everything but the per-app values passed in `extra`.
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::with_capacity(16 * 1024);
        out.push_str("# HELP sphere_http_requests_total HTTP requests answered, by route, method and status.\n");
        out.push_str("# TYPE sphere_http_requests_total counter\n");
        let mut routes: Vec<(RouteKey, Arc<Histogram>)> = self
            .requests
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, histogram) in &routes {
            let _ = writeln!(
                out,
                "sphere_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{}\"}} {}",
                key.route,
                key.method,
                key.status,
                histogram.count.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP sphere_http_request_duration_seconds Time to answer, by route, method and status.\n");
        out.push_str("# TYPE sphere_http_request_duration_seconds histogram\n");
        for (key, histogram) in &routes {
            let labels = format!(
                "route=\"{}\",method=\"{}\",status=\"{}\"",
                key.route, key.method, key.status
            );
            histogram.render(&mut out, "sphere_http_request_duration_seconds", &labels);
        }
        let log = &self.log;
        for (name, help, value) in [
            (
                "sphere_eventlog_append_requests_total",
                "Append requests committed by the embedded log's writer.",
                &log.append_requests,
            ),
            (
                "sphere_eventlog_events_appended_total",
                "Events committed by the embedded log's writer.",
                &log.events_appended,
            ),
            (
                "sphere_eventlog_rejected_appends_total",
                "Append requests refused (concurrency conflicts, duplicates, invalid).",
                &log.rejected_appends,
            ),
            (
                "sphere_eventlog_commits_total",
                "Group commits (one fsync each).",
                &log.commits,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        out.push_str(
            "# HELP sphere_eventlog_commit_duration_seconds Group commit time, including fsync.\n",
        );
        out.push_str("# TYPE sphere_eventlog_commit_duration_seconds histogram\n");
        log.commit_latency
            .render(&mut out, "sphere_eventlog_commit_duration_seconds", "");
        out.push_str(extra);
        if let Ok(gauges) = self.gauges.lock() {
            for gauge in gauges.iter() {
                let _ = writeln!(
                    out,
                    "# HELP {} {}\n# TYPE {} gauge",
                    gauge.name, gauge.help, gauge.name
                );
                for (labels, value) in (gauge.read)() {
                    if labels.is_empty() {
                        let _ = writeln!(out, "{} {value}", gauge.name);
                    } else {
                        let _ = writeln!(out, "{}{{{labels}}} {value}", gauge.name);
                    }
                }
            }
        }
        out
    }
}

/// Path segments kept as they are in a route label; everything else (ids, job ids, file
/// names) becomes `{id}` so that the number of series stays bounded.
const LITERALS: &[&str] = &[
    "fhir",
    "r4",
    "health",
    "ready",
    "metrics",
    "auth",
    ".well-known",
    "smart-configuration",
    "openid-configuration",
    "jwks.json",
    "metadata",
    "services-base-url",
    "services-base-url.ndjson",
    "authorize",
    "token",
    "revoke",
    "introspect",
    "register",
    "login",
    "consent",
    "grants",
    "launch",
    "bulk",
    "status",
    "files",
];

/// The route label of a request path: `/fhir/r4/Patient/123` -> `/fhir/r4/Patient/{id}`.
pub fn route_of(path: &str) -> String {
    let mut route = String::new();
    for (i, segment) in path.split('/').filter(|s| !s.is_empty()).enumerate() {
        if i >= 6 {
            route.push_str("/...");
            break;
        }
        route.push('/');
        let keep = LITERALS.contains(&segment)
            || segment.starts_with('$')
            || segment.starts_with('_')
            || sphere_domain::fhir::is_resource_type(segment);
        route.push_str(if keep { segment } else { "{id}" });
    }
    if route.is_empty() {
        route.push('/');
    }
    route
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_hide_ids_and_keep_types_and_operations() {
        assert_eq!(route_of("/fhir/r4/Patient/123"), "/fhir/r4/Patient/{id}");
        assert_eq!(
            route_of("/fhir/r4/Patient/abc/_history/2"),
            "/fhir/r4/Patient/{id}/_history/{id}"
        );
        assert_eq!(
            route_of("/fhir/r4/Group/g1/$export"),
            "/fhir/r4/Group/{id}/$export"
        );
        assert_eq!(route_of("/health/ready"), "/health/ready");
        assert_eq!(route_of("/"), "/");
        assert_eq!(route_of("/nonsense-path"), "/{id}");
    }

    #[test]
    fn histograms_are_cumulative_and_exposed_in_text_format() {
        let m = Metrics::default();
        m.observe_request("/fhir/r4/Patient/1", "GET", 200, Duration::from_micros(700));
        m.observe_request("/fhir/r4/Patient/2", "GET", 200, Duration::from_millis(30));
        m.register_gauge(
            "sphere_test_gauge",
            "a test",
            Box::new(|| vec![(String::new(), 3.0)]),
        );
        let text = m.render("");
        assert!(text.contains(
            "sphere_http_requests_total{route=\"/fhir/r4/Patient/{id}\",method=\"GET\",status=\"200\"} 2"
        ));
        assert!(text.contains("le=\"0.001\"} 1"));
        assert!(text.contains("le=\"0.05\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains("sphere_test_gauge 3"));
    }
}
