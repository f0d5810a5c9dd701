//! Dev material: a CA, a server certificate and a dev attestation issuer,
//! generated once under `certs/` so `writ serve` runs on a fresh clone.
//! Private keys are written mode 0600 and never overwritten.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::json;

use crate::config::{DEV_AUDIENCE, DEV_ISSUER, SigningAlgorithm};
use crate::token::SigningKey;

/// The dev CA certificate clients should trust.
pub const CA_CERT: &str = "ca.pem";
/// The dev CA private key.
pub const CA_KEY: &str = "ca-key.pem";
/// The server certificate.
pub const SERVER_CERT: &str = "server.pem";
/// The server private key.
pub const SERVER_KEY: &str = "server-key.pem";
/// The dev attestation issuer's private key.
pub const DEV_ISSUER_KEY: &str = "dev-issuer-key.pem";
/// The dev attestation issuer's public JWKS.
pub const DEV_ISSUER_JWKS: &str = "dev-issuer.jwks.json";
/// The dev admin bearer token (for `WRIT_ADMIN_TOKEN`).
pub const DEV_ADMIN_TOKEN: &str = "dev-admin-token";
/// A dev client certificate naming the `payments/api` workload, for mTLS.
pub const DEV_CLIENT_CERT: &str = "dev-client.pem";
/// Its private key.
pub const DEV_CLIENT_KEY: &str = "dev-client-key.pem";
/// The SPIFFE ID in the dev client certificate.
pub const DEV_CLIENT_SPIFFE_ID: &str = "spiffe://cluster.local/ns/payments/sa/api";
/// How long a dev client certificate lives: short lifetimes, not
/// revocation lists, are how mTLS identities are retired.
pub const DEV_CLIENT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Why dev material could not be made or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Certificate or key generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// The dev issuer could not sign.
    #[error("dev issuer: {0}")]
    Sign(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertsError + '_ {
    move |source| CertsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertsError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(contents).map_err(io_err(path))
}

fn read(path: &Path) -> Result<String, CertsError> {
    std::fs::read_to_string(path).map_err(io_err(path))
}

/// Generates whatever dev material is missing in `dir`; returns the files it wrote.
pub fn init(dir: &Path) -> Result<Vec<PathBuf>, CertsError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut written = Vec::new();
    let (ca_cert_path, ca_key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    let ca_is_new = !ca_cert_path.exists() || !ca_key_path.exists();
    let (ca_key, ca_cert) = if ca_is_new {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "writ dev CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        for p in [&ca_cert_path, &ca_key_path] {
            let _ = std::fs::remove_file(p);
        }
        write_file(&ca_key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&ca_cert_path, cert.pem().as_bytes(), 0o644)?;
        written.extend([ca_cert_path.clone(), ca_key_path.clone()]);
        (key, cert)
    } else {
        load_ca(dir)?
    };

    let (server_cert_path, server_key_path) = (dir.join(SERVER_CERT), dir.join(SERVER_KEY));
    if ca_is_new || !server_cert_path.exists() || !server_key_path.exists() {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into(), "::1".into()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "writ dev server");
        let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
        for p in [&server_cert_path, &server_key_path] {
            let _ = std::fs::remove_file(p);
        }
        write_file(&server_key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&server_cert_path, cert.pem().as_bytes(), 0o644)?;
        written.extend([server_cert_path, server_key_path]);
    }

    let (issuer_key_path, jwks_path) = (dir.join(DEV_ISSUER_KEY), dir.join(DEV_ISSUER_JWKS));
    if !issuer_key_path.exists() || !jwks_path.exists() {
        let key = KeyPair::generate()?;
        let jwks = json!({ "keys": [signing_key(&key)?.public_jwk()] });
        for p in [&issuer_key_path, &jwks_path] {
            let _ = std::fs::remove_file(p);
        }
        write_file(&issuer_key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&jwks_path, jwks.to_string().as_bytes(), 0o644)?;
        written.extend([issuer_key_path, jwks_path]);
    }

    let admin_path = dir.join(DEV_ADMIN_TOKEN);
    if !admin_path.exists() {
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| CertsError::Sign("system randomness unavailable".into()))?;
        write_file(
            &admin_path,
            format!("{}\n", hex::encode(secret)).as_bytes(),
            0o600,
        )?;
        written.push(admin_path);
    }
    Ok(written)
}

/// Issues a fresh dev client certificate under `dir`, signed by the dev CA
/// and valid for [`DEV_CLIENT_LIFETIME`] from `now`, replacing the previous
/// one: each dev start hands out a new short-lived identity.
pub fn issue_dev_client(dir: &Path, now: u64) -> Result<[PathBuf; 2], CertsError> {
    let (ca_key, ca_cert) = load_ca(dir)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "writ dev client");
    params.subject_alt_names = vec![rcgen::SanType::URI(DEV_CLIENT_SPIFFE_ID.try_into()?)];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    // A minute of slack for clocks that disagree a little.
    params.not_before = epoch + std::time::Duration::from_secs(now.saturating_sub(60));
    params.not_after = epoch + std::time::Duration::from_secs(now) + DEV_CLIENT_LIFETIME;
    let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
    let (cert_path, key_path) = (dir.join(DEV_CLIENT_CERT), dir.join(DEV_CLIENT_KEY));
    for p in [&cert_path, &key_path] {
        let _ = std::fs::remove_file(p);
    }
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok([cert_path, key_path])
}

/// The dev CA in `dir`, ready to sign leaves. Re-signing the stored
/// parameters yields an issuer with the same name and key, which is all
/// signing a leaf needs.
fn load_ca(dir: &Path) -> Result<(KeyPair, rcgen::Certificate), CertsError> {
    let key = KeyPair::from_pem(&read(&dir.join(CA_KEY))?)?;
    let cert =
        CertificateParams::from_ca_cert_pem(&read(&dir.join(CA_CERT))?)?.self_signed(&key)?;
    Ok((key, cert))
}

/// The SHA-256 (hex) of the dev admin token in `dir`, for `admin.token_sha256`.
pub fn dev_admin_token_sha256(dir: &Path) -> Result<String, CertsError> {
    let token = read(&dir.join(DEV_ADMIN_TOKEN))?;
    Ok(crate::digest::sha256_hex(token.trim().as_bytes()))
}

/// The dev issuer key as a ring signing key (its JWK and `kid` come from there).
fn signing_key(key: &KeyPair) -> Result<SigningKey, CertsError> {
    SigningKey::from_pkcs8(SigningAlgorithm::ES256, &key.serialize_der())
        .map_err(|e| CertsError::Sign(e.to_string()))
}

/// The dev attestation issuer: signs Kubernetes-style service-account
/// tokens that dev mode trusts. For demos and `writ token --as` only.
pub struct DevIssuer {
    key: SigningKey,
}

impl DevIssuer {
    /// Loads the dev issuer from `dir`.
    pub fn load(dir: &Path) -> Result<Self, CertsError> {
        let key = KeyPair::from_pem(&read(&dir.join(DEV_ISSUER_KEY))?)?;
        Ok(Self {
            key: signing_key(&key)?,
        })
    }

    /// A projected service-account token for `namespace/service_account`.
    pub fn service_account_token(
        &self,
        namespace: &str,
        service_account: &str,
        now: u64,
        ttl: u64,
    ) -> Result<String, CertsError> {
        let header = json!({"alg": "ES256", "kid": self.key.kid(), "typ": "JWT"});
        let claims = json!({
            "iss": DEV_ISSUER,
            "aud": [DEV_AUDIENCE],
            "sub": format!("system:serviceaccount:{namespace}:{service_account}"),
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": service_account, "uid": format!("dev-{namespace}-{service_account}")},
                "pod": {"name": format!("{service_account}-dev"), "uid": "dev-pod"},
            },
        });
        let mut jws = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(jws.as_bytes())
            .map_err(|e| CertsError::Sign(e.to_string()))?;
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jws)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_writes_keys_owner_only_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let first = init(dir.path()).unwrap();
        assert_eq!(first.len(), 7);
        for key in [CA_KEY, SERVER_KEY, DEV_ISSUER_KEY, DEV_ADMIN_TOKEN] {
            let mode = std::fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        assert!(init(dir.path()).unwrap().is_empty());
        std::fs::remove_file(dir.path().join(SERVER_CERT)).unwrap();
        assert_eq!(init(dir.path()).unwrap().len(), 2);
    }
}
