//! Configuration: one typed struct, loaded from the embedded `config/default.toml`, an optional
//! file, the environment, then command-line flags, and validated at start with one clear line
//! per problem.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The embedded defaults, so the binary starts from any directory.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Environment variables and the keys they set: the one table the loader and the README use.
pub const ENVIRONMENT: &[(&str, &str, &str)] = &[
    ("SPHERE_DATA_DIR", "data_dir", "data directory"),
    ("SPHERE_LISTEN", "listen", "listen address HOST:PORT"),
    (
        "SPHERE_PUBLIC_BASE_URL",
        "public_base_url",
        "base URL clients use",
    ),
    ("SPHERE_LOG_LEVEL", "log_level", "tracing filter"),
    ("SPHERE_LOG_FORMAT", "log_format", "text or json"),
    ("SPHERE_TLS", "tls.enabled", "true or false"),
    ("SPHERE_TLS_CERT", "tls.cert", "PEM certificate chain"),
    ("SPHERE_TLS_KEY", "tls.key", "PEM private key"),
    (
        "SPHERE_EVENTSTORE_URL",
        "eventstore.url",
        "KurrentDB connection string",
    ),
    (
        "SPHERE_MAX_BODY_BYTES",
        "http.max_body_bytes",
        "request body limit",
    ),
    (
        "SPHERE_SMART_APPROVAL_REQUIRED",
        "smart.approval_required",
        "true: new apps wait for an operator",
    ),
    (
        "SPHERE_SMART_ACCESS_TOKEN_SECONDS",
        "smart.access_token_seconds",
        "access token and id_token lifetime",
    ),
    (
        "SPHERE_SMART_RATE_LIMIT_PER_SECOND",
        "smart.rate_limit_per_second",
        "requests per second per app",
    ),
    (
        "SPHERE_SMART_RATE_LIMIT_BURST",
        "smart.rate_limit_burst",
        "burst per app",
    ),
    (
        "SPHERE_SMART_JWKS_CACHE_SECONDS",
        "smart.jwks_cache_seconds",
        "how long fetched client keys are used",
    ),
    (
        "SPHERE_SMART_JWKS_REFETCH_SECONDS",
        "smart.jwks_refetch_seconds",
        "least time between jwks_uri refetches per client",
    ),
    (
        "SPHERE_SMART_JWKS_CA_FILE",
        "smart.jwks_ca_file",
        "extra CA certificates (PEM) for jwks_uri",
    ),
    (
        "SPHERE_SMART_LOGIN_MAX_FAILURES",
        "smart.login_max_failures",
        "failed sign-ins before a lockout",
    ),
    (
        "SPHERE_SMART_LOGIN_LOCKOUT_SECONDS",
        "smart.login_lockout_seconds",
        "lockout length",
    ),
    (
        "SPHERE_BULK_STORAGE",
        "bulk.storage",
        "export files: local or s3",
    ),
    ("SPHERE_BULK_S3_BUCKET", "bulk.s3_bucket", "export bucket"),
    (
        "SPHERE_BULK_S3_ENDPOINT",
        "bulk.s3_endpoint",
        "S3-compatible service URL (empty: AWS)",
    ),
    ("SPHERE_BULK_S3_REGION", "bulk.s3_region", "bucket region"),
    (
        "SPHERE_BULK_S3_PREFIX",
        "bulk.s3_prefix",
        "key prefix of export files",
    ),
    (
        "SPHERE_BULK_S3_ALLOW_HTTP",
        "bulk.s3_allow_http",
        "true: allow an http:// endpoint",
    ),
];

/// Keys whose environment values are whole numbers.
const NUMERIC_KEYS: &[&str] = &[
    "http.max_body_bytes",
    "smart.access_token_seconds",
    "smart.rate_limit_per_second",
    "smart.rate_limit_burst",
    "smart.jwks_cache_seconds",
    "smart.jwks_refetch_seconds",
    "smart.login_max_failures",
    "smart.login_lockout_seconds",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: String,
    pub public_base_url: String,
    pub log_level: String,
    pub log_format: String,
    pub tls: TlsConfig,
    pub eventstore: EventStoreConfig,
    pub http: HttpConfig,
    pub service: ServiceConfig,
    pub smart: SmartConfig,
    /// Bulk Data export; every key has a default, so the section may be left out.
    #[serde(default)]
    pub bulk: crate::bulk::BulkConfig,
    /// The access history; the section may be left out.
    #[serde(default)]
    pub audit: AuditConfig,
}

/// `[audit]`: the access history (`crate::audit`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Record every access before answering it. Only a benchmark baseline turns this off:
    /// without it the server keeps no access history (45 CFR 170.315(d)(2) and (d)(3)).
    pub enabled: bool,
    /// Least time between two commits of access records, in milliseconds. Records arriving
    /// meanwhile share the next commit: every commit of the log costs each projection a read
    /// and each read connection its page cache, so fewer, larger commits leave more of the
    /// machine to the reads themselves, for at most this much more latency per request.
    #[serde(default = "default_group_commit_ms")]
    pub group_commit_ms: u64,
}

fn default_group_commit_ms() -> u64 {
    2
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            group_commit_ms: default_group_commit_ms(),
        }
    }
}

/// The organization published with the service base URL list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub organization_name: String,
    pub organization_npi: String,
    pub organization_address: Vec<String>,
    pub organization_city: String,
    pub organization_state: String,
    pub organization_postal_code: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub enabled: bool,
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventStoreConfig {
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub max_body_bytes: u64,
    pub consistency_wait_ms: u64,
    pub shutdown_grace_ms: u64,
}

/// The SMART authorization server's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmartConfig {
    pub access_token_seconds: u64,
    pub refresh_token_days: u64,
    pub approval_required: bool,
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    /// How long a client's keys fetched from its `jwks_uri` are used before a refetch.
    pub jwks_cache_seconds: u64,
    /// At most one `jwks_uri` refetch per client this often (an unknown `kid` triggers one).
    pub jwks_refetch_seconds: u64,
    /// PEM CA certificates trusted for `jwks_uri` fetches besides the system roots.
    pub jwks_ca_file: String,
    /// Failed sign-ins for one username (or from one address) before it is locked out.
    pub login_max_failures: u32,
    /// How long a lockout lasts, and the window failures are counted in.
    pub login_lockout_seconds: u64,
}

/// Values from command-line flags; they win over everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
}

/// Every problem found, one line each.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, line) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "config: {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Loads defaults, `--config`/`SPHERE_CONFIG` file, environment, flags; then validates.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigErrors> {
        Self::load_from(overrides, |name| std::env::var(name).ok())
    }

    /// As [`Config::load`], reading the environment through `env` (for tests).
    pub fn load_from(
        overrides: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigErrors> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        let file = overrides
            .config_file
            .clone()
            .or_else(|| env("SPHERE_CONFIG").map(PathBuf::from));
        if let Some(file) = &file {
            if !file.is_file() {
                return Err(ConfigErrors(vec![format!(
                    "config file {} does not exist",
                    file.display()
                )]));
            }
            builder = builder
                .add_source(config::File::from(file.as_path()).format(config::FileFormat::Toml));
        }
        let mut problems = Vec::new();
        for (name, key, _) in ENVIRONMENT {
            if let Some(value) = env(name) {
                builder = match *key {
                    "tls.enabled" | "smart.approval_required" | "bulk.s3_allow_http" => {
                        match parse_bool(&value) {
                            Some(b) => set(builder, key, b, &mut problems),
                            None => {
                                problems.push(format!("{name}={value:?} must be true or false"));
                                builder
                            }
                        }
                    }
                    k if NUMERIC_KEYS.contains(&k) => match value.parse::<u64>() {
                        Ok(n) => set(builder, key, n, &mut problems),
                        Err(_) => {
                            problems.push(format!("{name}={value:?} must be a whole number"));
                            builder
                        }
                    },
                    _ => set(builder, key, value, &mut problems),
                };
            }
        }
        if let Some(dir) = &overrides.data_dir {
            builder = set(
                builder,
                "data_dir",
                dir.to_string_lossy().into_owned(),
                &mut problems,
            );
        }
        if let Some(listen) = &overrides.listen {
            builder = set(builder, "listen", listen.clone(), &mut problems);
        }
        if !problems.is_empty() {
            return Err(ConfigErrors(problems));
        }
        let config: Config = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigErrors> {
        let mut problems = Vec::new();
        if self.data_dir.as_os_str().is_empty() {
            problems.push("data_dir must not be empty".into());
        }
        if self.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "listen = {:?} is not an address like 127.0.0.1:8443",
                self.listen
            ));
        }
        let base = &self.public_base_url;
        if !base.is_empty() && !base.starts_with("https://") && !base.starts_with("http://") {
            problems.push(format!(
                "public_base_url = {:?} must start with https:// (or http:// behind a proxy)",
                self.public_base_url
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            problems.push(format!(
                "log_level = {:?} is not a tracing filter (try info or debug)",
                self.log_level
            ));
        }
        if self.audit.group_commit_ms > 100 {
            problems.push(format!(
                "audit.group_commit_ms = {} is more than 100: every recorded request waits up to that long",
                self.audit.group_commit_ms
            ));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            problems.push(format!(
                "log_format = {:?} must be text or json",
                self.log_format
            ));
        }
        match (self.tls.cert.is_empty(), self.tls.key.is_empty()) {
            (true, true) => {}
            (false, false) => {
                for (what, path) in [("tls.cert", &self.tls.cert), ("tls.key", &self.tls.key)] {
                    if !Path::new(path).is_file() {
                        problems.push(format!("{what} = {path:?}: no such file"));
                    }
                }
            }
            _ => problems.push("tls.cert and tls.key must be given together".into()),
        }
        let url = &self.eventstore.url;
        if !url.is_empty()
            && ![
                "kurrentdb://",
                "kurrentdb+discover://",
                "esdb://",
                "esdb+discover://",
            ]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            problems.push(
                "eventstore.url must be a kurrentdb:// or esdb:// connection string (empty: embedded log)"
                    .into(),
            );
        }
        if self.service.organization_name.trim().is_empty() {
            problems.push("service.organization_name must not be empty".into());
        }
        if !self.service.organization_npi.is_empty()
            && (self.service.organization_npi.len() != 10
                || !self
                    .service
                    .organization_npi
                    .bytes()
                    .all(|b| b.is_ascii_digit()))
        {
            problems.push(format!(
                "service.organization_npi = {:?} must be 10 digits",
                self.service.organization_npi
            ));
        }
        if self.smart.access_token_seconds == 0 || self.smart.access_token_seconds > 3600 {
            problems.push("smart.access_token_seconds must be between 1 and 3600".into());
        }
        if self.smart.refresh_token_days < 90 {
            problems.push(
                "smart.refresh_token_days must be at least 90 (offline_access lasts three months)"
                    .into(),
            );
        }
        if self.smart.rate_limit_per_second == 0 || self.smart.rate_limit_burst == 0 {
            problems
                .push("smart.rate_limit_per_second and rate_limit_burst must be above 0".into());
        }
        if self.smart.jwks_cache_seconds == 0 {
            problems.push("smart.jwks_cache_seconds must be above 0".into());
        }
        let ca = &self.smart.jwks_ca_file;
        if !ca.is_empty() && !Path::new(ca).is_file() {
            problems.push(format!("smart.jwks_ca_file = {ca:?}: no such file"));
        }
        if self.smart.login_max_failures == 0 || self.smart.login_lockout_seconds == 0 {
            problems
                .push("smart.login_max_failures and login_lockout_seconds must be above 0".into());
        }
        if self.http.max_body_bytes == 0 {
            problems.push("http.max_body_bytes must be greater than 0".into());
        }
        if let Err(problem) = self.bulk.storage(&self.data_dir) {
            problems.push(problem);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(problems))
        }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
            .parse()
            .expect("validated when the config was loaded")
    }

    /// The base URL clients use, without a trailing slash.
    pub fn base_url(&self) -> String {
        if !self.public_base_url.is_empty() {
            return self.public_base_url.trim_end_matches('/').to_owned();
        }
        let addr = self.listen_addr();
        let scheme = if self.tls.enabled { "https" } else { "http" };
        let host = if addr.ip().is_unspecified() || addr.ip().is_loopback() {
            "localhost".to_owned()
        } else {
            addr.ip().to_string()
        };
        format!("{scheme}://{host}:{}", addr.port())
    }

    /// The FHIR base URL (`{base}/fhir/r4`).
    pub fn fhir_base_url(&self) -> String {
        format!("{}/fhir/r4", self.base_url())
    }

    /// Whether the embedded SQLite log is in use.
    pub fn embedded_log(&self) -> bool {
        self.eventstore.url.is_empty()
    }
}

fn set<T: Into<config::Value>>(
    builder: config::ConfigBuilder<config::builder::DefaultState>,
    key: &str,
    value: T,
    problems: &mut Vec<String>,
) -> config::ConfigBuilder<config::builder::DefaultState> {
    match builder.clone().set_override(key, value) {
        Ok(b) => b,
        Err(e) => {
            problems.push(format!("{key}: {e}"));
            builder
        }
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(env: &[(&str, &str)], overrides: Overrides) -> Result<Config, ConfigErrors> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_from(&overrides, |k| env.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_embedded_single_machine_setup() {
        let c = load(&[], Overrides::default()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert!(c.tls.enabled);
        assert!(c.embedded_log());
        assert_eq!(c.base_url(), "https://localhost:8443");
        assert_eq!(c.fhir_base_url(), "https://localhost:8443/fhir/r4");
    }

    #[test]
    fn environment_then_flags_override_defaults() {
        let c = load(
            &[
                ("SPHERE_DATA_DIR", "/tmp/env"),
                ("SPHERE_TLS", "false"),
                ("SPHERE_LISTEN", "0.0.0.0:9000"),
            ],
            Overrides {
                data_dir: Some("/tmp/flag".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/flag"));
        assert!(!c.tls.enabled);
        assert_eq!(c.base_url(), "http://localhost:9000");
    }

    #[test]
    fn every_bad_value_is_reported_on_its_own_line() {
        let err = load(
            &[
                ("SPHERE_LISTEN", "nowhere"),
                ("SPHERE_LOG_FORMAT", "xml"),
                ("SPHERE_TLS_CERT", "/no/such/cert.pem"),
                ("SPHERE_EVENTSTORE_URL", "postgres://x"),
            ],
            Overrides::default(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 4, "{text}");
        assert!(text.contains("listen = \"nowhere\""));
        assert!(text.contains("log_format"));
        assert!(text.contains("tls.cert and tls.key must be given together"));
        assert!(text.contains("eventstore.url"));
        assert!(text.lines().all(|l| l.starts_with("config: ")));
    }

    #[test]
    fn a_group_commit_pause_that_would_hold_every_request_is_refused() {
        let mut c = load(&[], Overrides::default()).unwrap();
        assert_eq!(c.audit.group_commit_ms, 2);
        c.audit.group_commit_ms = 500;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("audit.group_commit_ms = 500"), "{err}");
    }

    #[test]
    fn non_boolean_tls_flag_is_refused() {
        let err = load(&[("SPHERE_TLS", "maybe")], Overrides::default()).unwrap_err();
        assert!(err
            .to_string()
            .contains("SPHERE_TLS=\"maybe\" must be true or false"));
    }

    #[test]
    fn unknown_keys_in_a_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sphere.toml");
        std::fs::write(&file, "lisen = \"1.2.3.4:5\"\n").unwrap();
        let err = load(
            &[],
            Overrides {
                config_file: Some(file),
                ..Overrides::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }
}
