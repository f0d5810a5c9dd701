//! The TLS listener: accepts connections, bounds the handshake, records the
//! peer's address once per connection, and hands requests to the router.

use std::net::SocketAddr;
use std::sync::Arc;

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
async fn serve_http<IO>(io: IO, peer: Peer, app: Router, header_read_timeout: std::time::Duration)
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

/// Accepts until `shutdown` flips to true.
pub(super) async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    limits: LimitsConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
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
        let (tcp, addr) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let handshake_timeout = limits.handshake_timeout;
        let header_read_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%addr, "TLS handshake timed out");
                    return;
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
            serve_http(stream, peer, app, header_read_timeout).await;
        });
    }
}

/// Serves the same routes as plain HTTP on a Unix socket; each connection's
/// peer is attested once by `SO_PEERCRED` and `/proc/<pid>/exe`. A caller
/// CONTRACT section 1 says reads as `127.0.0.1`.
pub(super) async fn serve_unix(
    listener: tokio::net::UnixListener,
    app: Router,
    limits: LimitsConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let slot = tokio::select! {
            _ = shutdown.changed() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "unix accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let header_read_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let _slot = slot;
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
            serve_http(stream, peer, app, header_read_timeout).await;
        });
    }
}
