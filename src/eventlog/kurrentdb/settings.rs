//! The KurrentDB connection string, e.g. `kurrentdb://localhost:2113?tls=false` or
//! `kurrentdb+discover://admin:changeit@db.example:2113?tlsCAFile=/certs/ca.crt`.
//!
//! The official client parses it in full; Sphere reads the few parts its own v2 channel
//! needs (first node, TLS, CA file, credentials) and a redacted form for logs.

use crate::eventlog::EventLogError;

/// Schemes the official client accepts.
const SCHEMES: &[&str] = &[
    "kurrentdb",
    "kurrentdb+discover",
    "kurrent",
    "kurrent+discover",
    "kdb",
    "kdb+discover",
    "esdb",
    "esdb+discover",
];

/// Whether `url` names a KurrentDB (or EventStoreDB) server rather than an embedded log.
pub fn is_kurrentdb_url(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(scheme, _)| SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()))
}

#[derive(Debug, Clone)]
pub(crate) struct ConnectionString {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) secure: bool,
    pub(crate) tls_ca_file: Option<String>,
    pub(crate) credentials: Option<(String, String)>,
    /// The string with any password replaced, for messages.
    pub(crate) redacted: String,
}

impl ConnectionString {
    pub(crate) fn parse(raw: &str) -> Result<Self, EventLogError> {
        let invalid = |why: String| {
            EventLogError::Unavailable(format!("invalid KurrentDB connection string: {why}"))
        };
        if !is_kurrentdb_url(raw) {
            return Err(invalid(format!(
                "expected a scheme of {}",
                SCHEMES.join(", ")
            )));
        }
        let mut url = url::Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
        let host = url
            .host_str()
            .ok_or_else(|| invalid("no host".into()))?
            // A cluster seed list names several nodes; the first is enough to reach one.
            .split(',')
            .next()
            .unwrap_or_default()
            .to_string();
        let port = url.port().unwrap_or(2113);
        let mut secure = true;
        let mut tls_ca_file = None;
        for (key, value) in url.query_pairs() {
            match key.to_ascii_lowercase().as_str() {
                "tls" => {
                    secure = value
                        .parse()
                        .map_err(|_| invalid(format!("tls={value} is not true or false")))?
                }
                "tlscafile" => tls_ca_file = Some(value.into_owned()),
                _ => {}
            }
        }
        let credentials = (!url.username().is_empty()).then(|| {
            (
                decode(url.username()),
                decode(url.password().unwrap_or_default()),
            )
        });
        if url.password().is_some() {
            // Cannot fail: the URL has a host, so it can carry a password.
            let _ = url.set_password(Some("***"));
        }
        Ok(Self {
            host,
            port,
            secure,
            tls_ca_file,
            credentials,
            redacted: url.to_string(),
        })
    }
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_single_node() {
        let c = ConnectionString::parse("kurrentdb://localhost:2113?tls=false").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.secure),
            ("localhost", 2113, false)
        );
        assert!(c.credentials.is_none());
    }

    #[test]
    fn credentials_are_read_and_redacted() {
        let c = ConnectionString::parse("esdb://admin:s3cret@db:2113?tlsCAFile=/ca.crt").unwrap();
        assert_eq!(c.credentials, Some(("admin".into(), "s3cret".into())));
        assert!(c.secure);
        assert_eq!(c.tls_ca_file.as_deref(), Some("/ca.crt"));
        assert!(!c.redacted.contains("s3cret"));
    }

    #[test]
    fn only_kurrentdb_schemes_are_accepted() {
        assert!(is_kurrentdb_url("kurrentdb+discover://a:2113"));
        assert!(!is_kurrentdb_url("sqlite:./data"));
        assert!(ConnectionString::parse("http://localhost:2113").is_err());
    }
}
