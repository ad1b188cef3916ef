//! The server's signing keys: an RSA key (RS256 for id_tokens and access tokens) and an EC
//! P-384 key (ES384), generated on first start into `DATA_DIR/keys` (mode 0600) or supplied
//! there by the operator as PKCS#8 DER files, and published as a JWKS.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

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
}

/// The RSA and EC keys, and the JWKS that publishes them.
pub struct SigningKeys {
    pub rsa: SigningKey,
    pub ec: SigningKey,
    by_kid: HashMap<String, usize>,
    jwks: JwkSet,
}

impl SigningKeys {
    /// Loads `dir/rsa.pk8` and `dir/ec-p384.pk8`, generating each one that is missing.
    pub fn load_or_generate(dir: &Path) -> Result<Self, KeyError> {
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
        let rsa_path = dir.join("rsa.pk8");
        let ec_path = dir.join("ec-p384.pk8");
        let rsa_pk8 = read_or_generate(&rsa_path, &rcgen::PKCS_RSA_SHA256)?;
        let ec_pk8 = read_or_generate(&ec_path, &rcgen::PKCS_ECDSA_P384_SHA384)?;
        let unusable = |path: &Path, kind, message: String| KeyError::Unusable {
            path: path.display().to_string(),
            kind,
            message,
        };
        // jsonwebtoken's aws-lc backend wants RSA keys as PKCS#1 RSAPrivateKey.
        let pkcs1 = pkcs8_private_key(&rsa_pk8)
            .ok_or_else(|| unusable(&rsa_path, "RSA", "not PKCS#8 DER".into()))?;
        let rsa = signing_key(EncodingKey::from_rsa_der(pkcs1), Algorithm::RS256)
            .map_err(|e| unusable(&rsa_path, "RSA", e))?;
        let ec = signing_key(EncodingKey::from_ec_der(&ec_pk8), Algorithm::ES384)
            .map_err(|e| unusable(&ec_path, "EC P-384", e))?;
        let jwks = JwkSet {
            keys: vec![rsa.jwk.clone(), ec.jwk.clone()],
        };
        let by_kid = HashMap::from([(rsa.kid.clone(), 0), (ec.kid.clone(), 1)]);
        Ok(Self {
            rsa,
            ec,
            by_kid,
            jwks,
        })
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// The key a token names by `kid`, if it is one of ours.
    pub fn by_kid(&self, kid: &str) -> Option<&SigningKey> {
        match self.by_kid.get(kid)? {
            0 => Some(&self.rsa),
            _ => Some(&self.ec),
        }
    }
}

fn signing_key(encoding: EncodingKey, algorithm: Algorithm) -> Result<SigningKey, String> {
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
    // Written to a temp file with 0600 from the start, then renamed: the key is never
    // readable by others, and a crash never leaves half a key.
    let temp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temp).map_err(|e| file_error(&temp, e))?;
    file.write_all(&der).map_err(|e| file_error(&temp, e))?;
    file.sync_all().map_err(|e| file_error(&temp, e))?;
    std::fs::rename(&temp, path).map_err(|e| file_error(path, e))?;
    Ok(der)
}

/// The `privateKey` OCTET STRING of a PKCS#8 PrivateKeyInfo (RFC 5208):
/// SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey, ... }.
fn pkcs8_private_key(der: &[u8]) -> Option<&[u8]> {
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
}
