//! The server's signing keys: an RSA key (RS256, for id_tokens) and an EC P-384 key (ES384,
//! for access tokens), generated on first start into `DATA_DIR/keys` (mode 0600) or supplied
//! there by the operator as PKCS#8 DER files, and published as a JWKS.
//!
//! Rotation (`sphere keys rotate`) writes a new pair next to the old one and records the
//! change in `keys/ring.json`: which files sign now, and which retired at what time. A
//! retired key stays in the JWKS (and keeps validating what it signed) until every token it
//! could have signed has expired, then it drops out. The running server re-reads the ring
//! file (see [`KeyRing`]); private keys never leave the data directory - the event log
//! records only the public side of a rotation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};

/// The ring file: which key files sign, which are retired.
pub const RING_FILE: &str = "ring.json";
/// A retired key is dropped from the ring file (and its files deleted) once it is older than
/// the longest token lifetime the configuration allows, whatever the server's setting.
const LONGEST_TOKEN_MS: i64 = 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {message}")]
    File { path: String, message: String },
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("key {path} is not a usable {kind} key: {message}")]
    Unusable {
        path: String,
        kind: &'static str,
        message: String,
    },
}

/// One signing key with its published form.
pub struct SigningKey {
    pub kid: String,
    pub algorithm: Algorithm,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    pub jwk: Jwk,
    /// The private key parsed once. `jsonwebtoken::encode` parses and validates the key
    /// pair from DER on every call, which costs more than the signature itself.
    signer: Signer,
}

enum Signer {
    Rsa(aws_lc_rs::signature::RsaKeyPair),
    Ec(aws_lc_rs::signature::EcdsaKeyPair),
}

impl SigningKey {
    /// A compact JWS of `claims` under `header` (whose `alg` must be this key's algorithm),
    /// exactly what `jsonwebtoken::encode` produces, without re-parsing the key.
    pub fn sign<T: Serialize>(
        &self,
        header: &jsonwebtoken::Header,
        claims: &T,
    ) -> Result<String, String> {
        use base64::Engine;
        if header.alg != self.algorithm {
            return Err(format!(
                "{:?} key asked to sign {:?}",
                self.algorithm, header.alg
            ));
        }
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = serde_json::to_vec(header).map_err(|e| e.to_string())?;
        let claims = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let message = format!("{}.{}", b64.encode(header), b64.encode(claims));
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let signature = match &self.signer {
            Signer::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &rng,
                    message.as_bytes(),
                    &mut signature,
                )
                .map_err(|e| e.to_string())?;
                signature
            }
            Signer::Ec(pair) => pair
                .sign(&rng, message.as_bytes())
                .map_err(|e| e.to_string())?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{message}.{}", b64.encode(signature)))
    }
}

/// File names (inside the keys directory) of one RSA + EC pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFiles {
    pub rsa: String,
    pub ec: String,
}

impl Default for KeyFiles {
    /// The names of the first pair (and of servers from before rotation existed).
    fn default() -> Self {
        Self {
            rsa: "rsa.pk8".into(),
            ec: "ec-p384.pk8".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredKeys {
    #[serde(flatten)]
    pub files: KeyFiles,
    /// When the pair stopped signing (ms since the epoch).
    pub retired_ms: i64,
}

/// The contents of `keys/ring.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingFile {
    pub current: KeyFiles,
    #[serde(default)]
    pub retired: Vec<RetiredKeys>,
}

impl RingFile {
    /// Reads `dir/ring.json`; absent means the first pair only.
    pub fn read(dir: &Path) -> Result<Self, KeyError> {
        let path = dir.join(RING_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| file_error(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(file_error(&path, e)),
        }
    }

    fn write(&self, dir: &Path) -> Result<(), KeyError> {
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| KeyError::Generate(e.to_string()))?;
        write_atomically(&dir.join(RING_FILE), &bytes)
    }
}

/// What a rotation did, for the operator and the event log (public parts only).
#[derive(Debug, Clone, Serialize)]
pub struct Rotation {
    pub rsa_kid: String,
    pub ec_kid: String,
    /// The new public keys.
    pub jwks: JwkSet,
    /// Kids that stopped signing now and stay published until their tokens expire.
    pub retired_kids: Vec<String>,
    /// Kids removed from the ring for good (their files deleted).
    pub dropped_kids: Vec<String>,
    pub rotated_ms: i64,
}

/// The RSA and EC keys that sign, the retired keys still published, and the JWKS.
pub struct SigningKeys {
    pub rsa: SigningKey,
    pub ec: SigningKey,
    /// Retired keys still valid, with the time (ms) until which they are.
    retired: Vec<(SigningKey, i64)>,
    by_kid: HashMap<String, (usize, usize)>,
    jwks: JwkSet,
    /// The ring file this set was loaded from, to notice a rotation.
    ring: RingFile,
}

impl SigningKeys {
    /// Loads the first pair, `dir/rsa.pk8` and `dir/ec-p384.pk8`, generating each one that is
    /// missing (a server without a ring file, and unit tests).
    pub fn load_or_generate(dir: &Path) -> Result<Self, KeyError> {
        Self::load(dir, LONGEST_TOKEN_MS, crate::smart::now_ms())
    }

    /// Loads the ring in `dir`: the current pair (generated if missing) and every retired pair
    /// retired less than `lifetime_ms` before `now_ms`.
    pub fn load(dir: &Path, lifetime_ms: i64, now_ms: i64) -> Result<Self, KeyError> {
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
        let ring = RingFile::read(dir)?;
        let (rsa, ec) = load_pair(dir, &ring.current, true)?;
        let mut retired = Vec::new();
        for old in &ring.retired {
            let until = old.retired_ms + lifetime_ms;
            if until <= now_ms {
                continue;
            }
            let (r, e) = load_pair(dir, &old.files, false)?;
            retired.push((r, until));
            retired.push((e, until));
        }
        let mut keys = vec![rsa.jwk.clone(), ec.jwk.clone()];
        keys.extend(retired.iter().map(|(k, _)| k.jwk.clone()));
        let mut by_kid = HashMap::new();
        by_kid.insert(rsa.kid.clone(), (0, 0));
        by_kid.insert(ec.kid.clone(), (1, 0));
        for (i, (k, _)) in retired.iter().enumerate() {
            by_kid.entry(k.kid.clone()).or_insert((2, i));
        }
        Ok(Self {
            rsa,
            ec,
            retired,
            by_kid,
            jwks: JwkSet { keys },
            ring,
        })
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// The key a token names by `kid`, if it is one of ours (current or retired but valid).
    pub fn by_kid(&self, kid: &str) -> Option<&SigningKey> {
        match self.by_kid.get(kid)? {
            (0, _) => Some(&self.rsa),
            (1, _) => Some(&self.ec),
            (_, i) => self.retired.get(*i).map(|(k, _)| k),
        }
    }

    /// The earliest time (ms) a retired key stops being valid, if any is.
    pub fn next_expiry_ms(&self) -> Option<i64> {
        self.retired.iter().map(|(_, until)| *until).min()
    }

    /// Generates a new pair in `dir`, makes it the signing pair and retires the current one.
    /// Retired pairs older than the longest token lifetime leave the ring and are deleted.
    pub fn rotate(dir: &Path, now_ms: i64) -> Result<Rotation, KeyError> {
        // Loading first generates the first pair if there is none and proves the ring sound.
        let before = Self::load(dir, LONGEST_TOKEN_MS, now_ms)?;
        let mut ring = before.ring.clone();
        let stamp = uuid::Uuid::now_v7().simple().to_string();
        let files = KeyFiles {
            rsa: format!("rsa-{stamp}.pk8"),
            ec: format!("ec-p384-{stamp}.pk8"),
        };
        let (rsa, ec) = load_pair(dir, &files, true)?;
        let mut dropped = Vec::new();
        let mut kept = Vec::new();
        for old in std::mem::take(&mut ring.retired) {
            if old.retired_ms + LONGEST_TOKEN_MS <= now_ms {
                dropped.push(old);
            } else {
                kept.push(old);
            }
        }
        kept.push(RetiredKeys {
            files: ring.current.clone(),
            retired_ms: now_ms,
        });
        ring.retired = kept;
        ring.current = files;
        ring.write(dir)?;
        let mut dropped_kids = Vec::new();
        for old in &dropped {
            if let Ok((r, e)) = load_pair(dir, &old.files, false) {
                dropped_kids.extend([r.kid, e.kid]);
            }
            for file in [&old.files.rsa, &old.files.ec] {
                let _ = std::fs::remove_file(dir.join(file));
            }
        }
        Ok(Rotation {
            rsa_kid: rsa.kid.clone(),
            ec_kid: ec.kid.clone(),
            jwks: JwkSet {
                keys: vec![rsa.jwk, ec.jwk],
            },
            retired_kids: vec![before.rsa.kid.clone(), before.ec.kid.clone()],
            dropped_kids,
            rotated_ms: now_ms,
        })
    }
}

/// The keys a running server signs and verifies with, re-read when the ring file changes
/// (a `sphere keys rotate` from another process) and when a retired key expires.
pub struct KeyRing {
    dir: PathBuf,
    lifetime_ms: i64,
    current: RwLock<Arc<SigningKeys>>,
}

impl KeyRing {
    /// `lifetime_ms`: how long a token signed by a key may live (access token and id_token
    /// lifetime), and so how long a retired key stays published.
    pub fn open(dir: &Path, lifetime_ms: i64) -> Result<Self, KeyError> {
        let keys = SigningKeys::load(dir, lifetime_ms, crate::smart::now_ms())?;
        Ok(Self {
            dir: dir.to_owned(),
            lifetime_ms,
            current: RwLock::new(Arc::new(keys)),
        })
    }

    /// The keys as of now.
    pub fn get(&self) -> Arc<SigningKeys> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reloads if the ring file changed or a retired key expired; returns whether it did.
    /// A ring that fails to load keeps the keys in use (and says why).
    pub fn refresh(&self, now_ms: i64) -> Result<bool, KeyError> {
        let keys = self.get();
        let ring = RingFile::read(&self.dir)?;
        let expired = keys.next_expiry_ms().is_some_and(|t| t <= now_ms);
        if ring == keys.ring && !expired {
            return Ok(false);
        }
        let fresh = SigningKeys::load(&self.dir, self.lifetime_ms, now_ms)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(true)
    }
}

fn load_pair(
    dir: &Path,
    files: &KeyFiles,
    generate: bool,
) -> Result<(SigningKey, SigningKey), KeyError> {
    let rsa_path = dir.join(&files.rsa);
    let ec_path = dir.join(&files.ec);
    let (rsa_pk8, ec_pk8) = if generate {
        (
            read_or_generate(&rsa_path, &rcgen::PKCS_RSA_SHA256)?,
            read_or_generate(&ec_path, &rcgen::PKCS_ECDSA_P384_SHA384)?,
        )
    } else {
        (
            std::fs::read(&rsa_path).map_err(|e| file_error(&rsa_path, e))?,
            std::fs::read(&ec_path).map_err(|e| file_error(&ec_path, e))?,
        )
    };
    let unusable = |path: &Path, kind, message: String| KeyError::Unusable {
        path: path.display().to_string(),
        kind,
        message,
    };
    // jsonwebtoken's aws-lc backend wants RSA keys as PKCS#1 RSAPrivateKey.
    let pkcs1 = pkcs8_private_key(&rsa_pk8)
        .ok_or_else(|| unusable(&rsa_path, "RSA", "not PKCS#8 DER".into()))?;
    let rsa_signer = aws_lc_rs::signature::RsaKeyPair::from_der(pkcs1)
        .map_err(|e| unusable(&rsa_path, "RSA", e.to_string()))?;
    let rsa = signing_key(
        EncodingKey::from_rsa_der(pkcs1),
        Algorithm::RS256,
        Signer::Rsa(rsa_signer),
    )
    .map_err(|e| unusable(&rsa_path, "RSA", e))?;
    let ec_signer = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        &ec_pk8,
    )
    .map_err(|e| unusable(&ec_path, "EC P-384", e.to_string()))?;
    let ec = signing_key(
        EncodingKey::from_ec_der(&ec_pk8),
        Algorithm::ES384,
        Signer::Ec(ec_signer),
    )
    .map_err(|e| unusable(&ec_path, "EC P-384", e))?;
    Ok((rsa, ec))
}

fn signing_key(
    encoding: EncodingKey,
    algorithm: Algorithm,
    signer: Signer,
) -> Result<SigningKey, String> {
    let mut jwk = Jwk::from_encoding_key(&encoding, algorithm).map_err(|e| e.to_string())?;
    let kid = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| e.to_string())?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(match algorithm {
        Algorithm::ES384 => KeyAlgorithm::ES384,
        _ => KeyAlgorithm::RS256,
    });
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    Ok(SigningKey {
        kid,
        algorithm,
        encoding,
        decoding,
        jwk,
        signer,
    })
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> KeyError {
    KeyError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn read_or_generate(
    path: &Path,
    algorithm: &'static rcgen::SignatureAlgorithm,
) -> Result<Vec<u8>, KeyError> {
    match std::fs::read(path) {
        Ok(bytes) => return Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(file_error(path, e)),
    }
    let pair =
        rcgen::KeyPair::generate_for(algorithm).map_err(|e| KeyError::Generate(e.to_string()))?;
    let der = pair.serialize_der();
    write_atomically(path, &der)?;
    Ok(der)
}

/// Writes a key only its owner may read, atomically (see [`crate::private_file::write`]).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    crate::private_file::write(path, bytes).map_err(|(p, e)| file_error(&p, e))
}

/// The `privateKey` OCTET STRING of a PKCS#8 PrivateKeyInfo (RFC 5208):
/// SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey, ... }.
/// For an RSA key that is the PKCS#1 RSAPrivateKey jsonwebtoken's aws-lc backend wants.
pub fn pkcs8_private_key(der: &[u8]) -> Option<&[u8]> {
    let (tag, body, _) = der_element(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, _, rest) = der_element(body)?;
    if tag != 0x02 {
        return None;
    }
    let (tag, _, rest) = der_element(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, key, _) = der_element(rest)?;
    (tag == 0x04).then_some(key)
}

/// Splits one DER element off `input`: (tag, contents, rest).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((tag, input.get(header..end)?, input.get(end..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_generated_once_and_published_with_kids() {
        let dir = tempfile::tempdir().unwrap();
        let keys = SigningKeys::load_or_generate(dir.path()).unwrap();
        let again = SigningKeys::load_or_generate(dir.path()).unwrap();
        assert_eq!(keys.rsa.kid, again.rsa.kid);
        assert_eq!(keys.jwks().keys.len(), 2);
        assert!(keys.jwks().keys.iter().all(|k| k.common.key_id.is_some()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("rsa.pk8"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn cached_signers_make_tokens_that_jsonwebtoken_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let keys = SigningKeys::load_or_generate(dir.path()).unwrap();
        let claims = serde_json::json!({"sub": "s", "exp": 4_000_000_000u64});
        for key in [&keys.rsa, &keys.ec] {
            let mut header = jsonwebtoken::Header::new(key.algorithm);
            header.kid = Some(key.kid.clone());
            let token = key.sign(&header, &claims).unwrap();
            let mut v = jsonwebtoken::Validation::new(key.algorithm);
            v.validate_aud = false;
            let data =
                jsonwebtoken::decode::<serde_json::Value>(&token, &key.decoding, &v).unwrap();
            assert_eq!(data.claims["sub"], "s");
            // A wrong algorithm is refused, not silently signed.
            let other = if key.algorithm == Algorithm::RS256 {
                Algorithm::ES384
            } else {
                Algorithm::RS256
            };
            assert!(key
                .sign(&jsonwebtoken::Header::new(other), &claims)
                .is_err());
        }
    }

    #[test]
    fn rotation_keeps_old_keys_published_until_their_tokens_expire() {
        let dir = tempfile::tempdir().unwrap();
        let first = SigningKeys::load(dir.path(), 10_000, 1_000).unwrap();
        let rotation = SigningKeys::rotate(dir.path(), 2_000).unwrap();
        assert_ne!(rotation.rsa_kid, first.rsa.kid);
        assert_ne!(rotation.ec_kid, first.ec.kid);
        assert_eq!(
            rotation.retired_kids,
            vec![first.rsa.kid.clone(), first.ec.kid.clone()]
        );
        let during = SigningKeys::load(dir.path(), 10_000, 11_999).unwrap();
        assert_eq!(during.rsa.kid, rotation.rsa_kid);
        assert_eq!(during.jwks().keys.len(), 4);
        assert!(during.by_kid(&first.rsa.kid).is_some());
        assert_eq!(during.next_expiry_ms(), Some(12_000));
        let after = SigningKeys::load(dir.path(), 10_000, 12_000).unwrap();
        assert_eq!(after.jwks().keys.len(), 2);
        assert!(after.by_kid(&first.rsa.kid).is_none());
        // Past the longest lifetime a later rotation deletes the old files.
        let later = SigningKeys::rotate(dir.path(), 2_000 + LONGEST_TOKEN_MS).unwrap();
        assert_eq!(later.dropped_kids.len(), 2);
        assert!(!dir.path().join("rsa.pk8").exists());
        let ring = RingFile::read(dir.path()).unwrap();
        assert_eq!(ring.retired.len(), 1);
    }

    #[test]
    fn a_running_ring_notices_a_rotation_and_an_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), 5_000).unwrap();
        let old = ring.get().rsa.kid.clone();
        assert!(!ring.refresh(crate::smart::now_ms()).unwrap());
        let now = crate::smart::now_ms();
        SigningKeys::rotate(dir.path(), now).unwrap();
        assert!(ring.refresh(now).unwrap());
        assert_ne!(ring.get().rsa.kid, old);
        assert!(ring.get().by_kid(&old).is_some());
        assert!(ring.refresh(now + 5_000).unwrap());
        assert!(ring.get().by_kid(&old).is_none());
    }
}
