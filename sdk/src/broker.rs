//! Where the broker is and what its metadata says.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::Error;

/// The broker's RFC 8414 metadata (the fields the SDK uses).
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    /// `iss` of its tokens.
    pub issuer: String,
    /// Where to exchange attestations.
    pub token_endpoint: String,
    /// Its public keys.
    pub jwks_uri: String,
    /// The JSON revocation feed (`/v1/revocations`).
    pub revocation_feed_endpoint: Option<String>,
}

/// A connection to one broker: base URL, HTTPS client, cached metadata.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    client: reqwest::Client,
    metadata: OnceCell<Metadata>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("url", &self.inner.url)
            .finish()
    }
}

impl Broker {
    /// A broker at `url` trusting the system's roots.
    pub fn new(url: impl Into<String>) -> Result<Self, Error> {
        Self::with_client(
            url,
            Self::client_builder()
                .build()
                .map_err(|e| Error::Config(e.to_string()))?,
        )
    }

    /// A broker at `url` trusting only the CA in `ca_pem` (e.g. writ's dev CA).
    pub fn with_ca_pem(url: impl Into<String>, ca_pem: &[u8]) -> Result<Self, Error> {
        let ca = reqwest::Certificate::from_pem(ca_pem)
            .map_err(|e| Error::Config(format!("CA: {e}")))?;
        let client = Self::client_builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        Self::with_client(url, client)
    }

    /// A broker at `url` trusting only `ca_pem`, to which this workload proves
    /// what it is with the client certificate and key in `identity_pem` (mTLS
    /// attestation, for [`TokenSourceBuilder::client_credentials`]).
    ///
    /// [`TokenSourceBuilder::client_credentials`]: crate::TokenSourceBuilder::client_credentials
    pub fn with_mtls(
        url: impl Into<String>,
        ca_pem: &[u8],
        identity_pem: &[u8],
    ) -> Result<Self, Error> {
        let ca = reqwest::Certificate::from_pem(ca_pem)
            .map_err(|e| Error::Config(format!("CA: {e}")))?;
        // The message of a key parse error could quote the key; say only what failed.
        let identity = reqwest::Identity::from_pem(identity_pem)
            .map_err(|_| Error::Config("client certificate and key: not valid PEM".into()))?;
        let client = Self::client_builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .identity(identity)
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        Self::with_client(url, client)
    }

    /// A broker at `url` reached with a client you built (proxies, mTLS...).
    pub fn with_client(url: impl Into<String>, client: reqwest::Client) -> Result<Self, Error> {
        let url = url.into().trim_end_matches('/').to_owned();
        if !url.starts_with("https://") {
            return Err(Error::Config(format!("broker URL {url:?} must be https")));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                url,
                client,
                metadata: OnceCell::new(),
            }),
        })
    }

    fn client_builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .https_only(true)
            .connect_timeout(Duration::from_secs(5))
    }

    /// The HTTPS client.
    pub fn client(&self) -> &reqwest::Client {
        &self.inner.client
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The metadata, fetched once.
    pub async fn metadata(&self) -> Result<&Metadata, Error> {
        self.inner
            .metadata
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/oauth-authorization-server", self.inner.url);
                let resp = self
                    .inner
                    .client
                    .get(&url)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .map_err(|e| Error::Unavailable(format!("GET {url}: {e}")))?;
                if !resp.status().is_success() {
                    return Err(Error::Unavailable(format!("GET {url}: {}", resp.status())));
                }
                resp.json::<Metadata>()
                    .await
                    .map_err(|e| Error::Protocol(format!("metadata: {e}")))
            })
            .await
    }
}
