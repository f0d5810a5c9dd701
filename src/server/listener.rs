//! The listeners: one accept loop for the TLS port and the Unix socket,
//! each a [`Transport`] that establishes a connection and learns its peer
//! once; every request on it carries that [`Peer`] to the router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::StartError;
use crate::attest::Peer;
use crate::attest::mtls;
use crate::attest::unix::UnixConnection;
use crate::config::{LimitsConfig, TlsConfig};

/// Loads the server certificate and key.
pub(super) fn tls_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, StartError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|it| it.collect())
        .map_err(|e| StartError::Tls(format!("{}: {e}", tls.cert.display())))?;
    if certs.is_empty() {
        return Err(StartError::Tls(format!(
            "{}: no certificate",
            tls.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| StartError::Tls(format!("{}: {e}", tls.key.display())))?;
    let builder = ServerConfig::builder();
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        // Ask for a client certificate, but do not require one: bearer
        // callers share the port with mTLS callers.
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| StartError::Tls(format!("{}: {e}", ca.display())))?
            {
                roots
                    .add(cert)
                    .map_err(|e| StartError::Tls(format!("{}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .allow_unauthenticated()
                .build()
                .map_err(|e| StartError::Tls(format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves HTTP/1 or HTTP/2 on one connection, attaching `peer` to every
/// request. A client that sends no complete request head within
/// `header_read_timeout` (idle keep-alive included) is disconnected.
async fn serve_http<IO>(io: IO, peer: Peer, app: Router, header_read_timeout: Duration)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let addr = peer.addr;
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(peer.clone());
        app.clone().oneshot(req)
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(header_read_timeout))
        .keep_alive_timeout(header_read_timeout);
    if let Err(e) = builder.serve_connection(TokioIo::new(io), service).await {
        tracing::debug!(%addr, error = %e, "connection ended with an error");
    }
}

/// Where connections come from, and how each one's [`Peer`] is learned:
/// the one difference between the TLS port and the Unix socket. Everything
/// else (the connection cap, shutdown, accept back-off, HTTP) is the
/// accept loop's, written once.
pub(super) trait Transport: Send + Sync + 'static {
    /// A connection as accepted, before its peer is known.
    type Accepted: Send + 'static;
    /// The byte stream HTTP runs on.
    type Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;

    /// Waits for the next connection.
    fn accept(&self) -> impl Future<Output = std::io::Result<Self::Accepted>> + Send;

    /// Establishes the connection (a TLS handshake, a look at peer
    /// credentials) and says who is on the other end; `None` drops it.
    fn establish(
        &self,
        accepted: Self::Accepted,
    ) -> impl Future<Output = Option<(Self::Stream, Peer)>> + Send;
}

/// The TLS port: a bounded handshake, then the client certificate's
/// identity, if it names a usable one.
pub(super) struct TlsTransport {
    /// The bound socket.
    pub listener: TcpListener,
    /// Server certificate and client CA.
    pub acceptor: TlsAcceptor,
    /// How long a handshake may take.
    pub handshake_timeout: Duration,
}

impl Transport for TlsTransport {
    type Accepted = (tokio::net::TcpStream, SocketAddr);
    type Stream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

    async fn accept(&self) -> std::io::Result<Self::Accepted> {
        let (tcp, addr) = self.listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        Ok((tcp, addr))
    }

    async fn establish(&self, (tcp, addr): Self::Accepted) -> Option<(Self::Stream, Peer)> {
        let handshake = self.acceptor.accept(tcp);
        let stream = match tokio::time::timeout(self.handshake_timeout, handshake).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(%addr, error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::debug!(%addr, "TLS handshake timed out");
                return None;
            }
        };
        let client = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| match mtls::identity(leaf) {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::info!(%addr, reason = %e, "client certificate names no usable identity");
                    None
                }
            });
        let peer = Peer {
            addr,
            client,
            unix: None,
        };
        Some((stream, peer))
    }
}

/// The Unix socket: plain HTTP; each connection's peer is attested once by
/// `SO_PEERCRED` and `/proc/<pid>/exe`, and reads as `127.0.0.1` (CONTRACT
/// section 1).
pub(super) struct UnixTransport {
    /// The bound socket.
    pub listener: tokio::net::UnixListener,
}

impl Transport for UnixTransport {
    type Accepted = tokio::net::UnixStream;
    type Stream = tokio::net::UnixStream;

    async fn accept(&self) -> std::io::Result<Self::Accepted> {
        self.listener.accept().await.map(|(stream, _)| stream)
    }

    async fn establish(&self, stream: Self::Accepted) -> Option<(Self::Stream, Peer)> {
        let unix = match stream.peer_cred() {
            Ok(cred) => match cred.pid() {
                Some(pid) => tokio::task::spawn_blocking(move || {
                    UnixConnection::accept(cred.uid(), cred.gid(), pid).map(Arc::new)
                })
                .await
                .ok()
                .and_then(|r| {
                    r.map_err(|e| tracing::info!(reason = %e, "unix peer not attested"))
                        .ok()
                }),
                None => None,
            },
            Err(e) => {
                tracing::info!(error = %e, "no peer credentials");
                None
            }
        };
        let peer = Peer {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            client: None,
            unix,
        };
        Some((stream, peer))
    }
}

/// Accepts on `transport` until `shutdown` flips to true, at most
/// `limits.max_connections` at once, and serves each connection's requests
/// with its [`Peer`] attached.
pub(super) async fn serve<T: Transport>(
    transport: T,
    app: Router,
    limits: LimitsConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let transport = Arc::new(transport);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        // At the connection cap, stop accepting: the kernel backlog holds the rest.
        let slot = tokio::select! {
            _ = shutdown.changed() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = transport.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let transport = transport.clone();
        let app = app.clone();
        let header_read_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            if let Some((stream, peer)) = transport.establish(accepted).await {
                serve_http(stream, peer, app, header_read_timeout).await;
            }
        });
    }
}
