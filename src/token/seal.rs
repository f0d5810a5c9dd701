//! Private keys at rest: AES-256-GCM (ring) under a key-encryption key
//! read from `store.key_encryption_key_file`, a random 96-bit nonce per
//! key and the kid as associated data, so a sealed key cannot be moved to
//! another row. Stored form: nonce, then ciphertext and tag.

use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Why the key-encryption key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KekError {
    /// The file could not be read.
    #[error("key encryption key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file may be read by users other than writ's.
    #[error(
        "key encryption key file {path} is readable by group or others (mode {mode:o}); chmod 600 it"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// The file does not hold 32 bytes (raw, or 64 hex characters).
    #[error(
        "key encryption key file {path} must hold 32 random bytes (raw, or as 64 hex characters)"
    )]
    Length {
        /// The file.
        path: PathBuf,
    },
    /// Encryption failed (no randomness).
    #[error("sealing a signing key failed")]
    Seal,
}

/// The key-encryption key. Never printed.
pub struct Kek {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// Reads the key from `path`: 32 raw bytes or 64 hex characters (a
    /// trailing newline is ignored), in a file only its owner may read.
    pub fn load(path: &Path) -> Result<Self, KekError> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let io = |source| KekError::Io {
            path: path.to_owned(),
            source,
        };
        // The mode is checked on the file that is read (one open), so it
        // cannot be swapped in between; more than a key's worth is not read.
        let file = std::fs::File::open(path).map_err(io)?;
        let mode = file.metadata().map_err(io)?.mode();
        if mode & 0o077 != 0 {
            return Err(KekError::Permissions {
                path: path.to_owned(),
                mode: mode & 0o7777,
            });
        }
        let mut raw = Vec::with_capacity(80);
        file.take(256).read_to_end(&mut raw).map_err(io)?;
        let bytes = Self::decode(&raw).ok_or_else(|| KekError::Length {
            path: path.to_owned(),
        })?;
        Self::from_bytes(&bytes).ok_or_else(|| KekError::Length {
            path: path.to_owned(),
        })
    }

    fn decode(raw: &[u8]) -> Option<Vec<u8>> {
        if raw.len() == 32 {
            return Some(raw.to_vec());
        }
        let text = std::str::from_utf8(raw).ok()?.trim();
        if text.len() == 64 {
            return hex::decode(text).ok();
        }
        None
    }

    /// A key from 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let key = UnboundKey::new(&AES_256_GCM, bytes).ok()?;
        Some(Self {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }

    /// Encrypts the PKCS#8 of key `kid`.
    pub fn seal(&self, kid: &str, pkcs8: &[u8]) -> Result<Vec<u8>, KekError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| KekError::Seal)?;
        let mut body = pkcs8.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut body,
            )
            .map_err(|_| KekError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decrypts what [`Kek::seal`] made for `kid`; `None` if this is the
    /// wrong key, the wrong kid, or the bytes were changed.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, body) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_with_its_kek_and_kid() {
        let kek = Kek::from_bytes(&[7; 32]).unwrap();
        let sealed = kek.seal("kid-1", b"pkcs8 bytes").unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"pkcs8 bytes"));
        assert_eq!(
            kek.open("kid-1", &sealed).as_deref(),
            Some(&b"pkcs8 bytes"[..])
        );
        assert_eq!(kek.open("kid-2", &sealed), None, "kid is bound");
        let other = Kek::from_bytes(&[8; 32]).unwrap();
        assert_eq!(other.open("kid-1", &sealed), None, "wrong KEK");
        assert_ne!(
            sealed,
            kek.seal("kid-1", b"pkcs8 bytes").unwrap(),
            "fresh nonce"
        );
    }

    #[test]
    fn the_kek_file_is_32_bytes_or_64_hex_and_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        let write = |bytes: &[u8], mode: u32| {
            std::fs::write(&path, bytes).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(&[1; 32], 0o600);
        assert!(Kek::load(&path).is_ok());
        write(format!("{}\n", "ab".repeat(32)).as_bytes(), 0o400);
        assert!(Kek::load(&path).is_ok());
        write(&[1; 31], 0o600);
        assert!(matches!(Kek::load(&path), Err(KekError::Length { .. })));
        write(&[1; 32], 0o644);
        let err = Kek::load(&path).unwrap_err();
        assert!(matches!(err, KekError::Permissions { .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"));
    }
}
