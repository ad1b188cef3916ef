//! Sign-in throttling: after `login_max_failures` failed sign-ins for one username within the
//! lockout period, that username is locked out for the period; one client address gets four
//! times as many failures (it may be a clinic behind one NAT) before it is locked out too.
//! A locked-out attempt is refused before the password is checked, so guessing stops paying
//! off, and a success clears the username's count. Other users are unaffected by a lockout
//! of one username.
//!
//! In memory on the node that serves the login page: a guesser spread over several nodes gets
//! `nodes x max` tries per period, which still ends brute force.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Entries kept before stale ones are swept.
const SWEEP_AT: usize = 10_000;
/// How many more failures one address may have than one username.
const ADDRESS_FACTOR: u32 = 4;

#[derive(Debug, Clone, Copy, Default)]
struct Failures {
    count: u32,
    /// Start of the counting window (ms).
    since_ms: i64,
    locked_until_ms: i64,
}

pub struct LoginThrottle {
    max_failures: u32,
    period_ms: i64,
    entries: Mutex<HashMap<String, Failures>>,
}

fn user_key(username: &str) -> String {
    format!("user:{}", username.to_lowercase())
}

fn address_key(address: IpAddr) -> String {
    format!("addr:{address}")
}

impl LoginThrottle {
    pub fn new(max_failures: u32, period_seconds: u64) -> Self {
        Self {
            max_failures: max_failures.max(1),
            period_ms: (period_seconds as i64).max(1) * 1000,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn keys(username: &str, address: Option<IpAddr>) -> Vec<String> {
        let mut keys = vec![user_key(username)];
        keys.extend(address.map(address_key));
        keys
    }

    /// `Err(seconds)` while the username or the address is locked out.
    pub fn check(&self, username: &str, address: Option<IpAddr>, now_ms: i64) -> Result<(), u64> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let wait_ms = Self::keys(username, address)
            .iter()
            .filter_map(|k| entries.get(k))
            .map(|f| f.locked_until_ms - now_ms)
            .max()
            .unwrap_or(0);
        if wait_ms > 0 {
            Err((wait_ms as u64).div_ceil(1000))
        } else {
            Ok(())
        }
    }

    /// Counts a failed sign-in; `Err(seconds)` if it starts a lockout.
    pub fn failed(&self, username: &str, address: Option<IpAddr>, now_ms: i64) -> Result<(), u64> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= SWEEP_AT {
            entries
                .retain(|_, f| f.locked_until_ms > now_ms || f.since_ms + self.period_ms > now_ms);
        }
        let mut locked = false;
        for (i, key) in Self::keys(username, address).into_iter().enumerate() {
            let limit = if i == 0 {
                self.max_failures
            } else {
                self.max_failures.saturating_mul(ADDRESS_FACTOR)
            };
            let f = entries.entry(key).or_default();
            if f.since_ms + self.period_ms <= now_ms {
                *f = Failures {
                    count: 0,
                    since_ms: now_ms,
                    locked_until_ms: f.locked_until_ms,
                };
            }
            f.count += 1;
            if f.count >= limit {
                f.locked_until_ms = now_ms + self.period_ms;
                f.count = 0;
                f.since_ms = now_ms;
                locked = true;
            }
        }
        if locked {
            Err((self.period_ms as u64).div_ceil(1000))
        } else {
            Ok(())
        }
    }

    /// A successful sign-in clears the username's failures (not the address's: one account
    /// an attacker owns must not reset the count for the others they guess at).
    pub fn succeeded(&self, username: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(&user_key(username));
    }
}

/// "5 minutes", "1 minute", "30 seconds": for the page that says how long to wait.
pub fn wait_words(seconds: u64) -> String {
    if seconds >= 90 {
        let minutes = seconds.div_ceil(60);
        format!("{minutes} minutes")
    } else if seconds == 1 {
        "1 second".into()
    } else {
        format!("{seconds} seconds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_username_is_locked_out_after_repeated_failures_and_others_are_not() {
        let t = LoginThrottle::new(3, 60);
        let ip: Option<IpAddr> = Some("10.0.0.1".parse().unwrap());
        assert!(t.failed("Alice", ip, 0).is_ok());
        assert!(t.failed("alice", ip, 1).is_ok());
        assert_eq!(t.failed("alice", ip, 2), Err(60));
        assert_eq!(t.check("ALICE", None, 3), Err(60));
        assert!(t.check("bob", None, 3).is_ok());
        assert!(t.check("alice", None, 60_002).is_ok(), "the lockout ends");
        // Failures outside the period do not add up.
        let t = LoginThrottle::new(2, 10);
        assert!(t.failed("carol", None, 0).is_ok());
        assert!(t.failed("carol", None, 20_000).is_ok());
        assert!(t.check("carol", None, 20_001).is_ok());
        t.succeeded("carol");
        assert!(
            t.failed("carol", None, 20_002).is_ok(),
            "a success clears the count"
        );
    }

    #[test]
    fn one_address_guessing_many_usernames_is_locked_out_too() {
        let t = LoginThrottle::new(2, 60);
        let ip: Option<IpAddr> = Some("10.0.0.9".parse().unwrap());
        for i in 0..7 {
            assert!(t.failed(&format!("user{i}"), ip, i).is_ok());
        }
        assert!(t.failed("user7", ip, 7).is_err());
        assert!(t.check("someone-else", ip, 8).is_err());
        assert!(t.check("someone-else", None, 8).is_ok());
    }

    #[test]
    fn waits_read_as_words() {
        assert_eq!(wait_words(300), "5 minutes");
        assert_eq!(wait_words(45), "45 seconds");
    }
}
