//! A tiny HTTPS server publishing an issuer's JWKS, as a real identity provider
//! would at its `jwks_uri`. The test can rotate the keys, count fetches, and stop it.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::pki::Pki;

pub struct JwksServer {
    /// `https://127.0.0.1:PORT/jwks`
    pub url: String,
    document: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    task: Option<JoinHandle<()>>,
}

impl JwksServer {
    /// Serves `jwks` over HTTPS with a certificate from `pki`.
    pub async fn start(pki: &Pki, jwks: Value) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let leaf = pki.server_cert();
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.cert_der], leaf.key_der)
            .expect("JWKS server TLS config");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind JWKS server");
        let port = listener.local_addr().expect("JWKS server address").port();
        let document = Arc::new(Mutex::new(jwks));
        let fetches = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(serve(
            listener,
            TlsAcceptor::from(Arc::new(tls)),
            Arc::clone(&document),
            Arc::clone(&fetches),
        ));
        Self {
            url: format!("https://127.0.0.1:{port}/jwks"),
            document,
            fetches,
            task: Some(task),
        }
    }

    /// Publishes a new key set (a key rotation at the identity provider).
    pub fn publish(&self, jwks: Value) {
        *self.document.lock().expect("JWKS lock") = jwks;
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Stops listening and drops every open connection.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Accepts connections until aborted; the connections live in a `JoinSet`
/// owned by this task, so aborting it closes them too.
async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    document: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        while connections.try_join_next().is_some() {}
        let acceptor = acceptor.clone();
        let document = Arc::clone(&document);
        let fetches = Arc::clone(&fetches);
        connections.spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |_request: Request<Incoming>| {
                fetches.fetch_add(1, Ordering::SeqCst);
                let body = document.lock().expect("JWKS lock").to_string();
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .expect("JWKS response"),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}
