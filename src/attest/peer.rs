//! What the listener knows about a connection's peer: the evidence a caller
//! brings without sending anything (its address, a verified client
//! certificate, Unix peer credentials). It lives here, beside the attestors
//! that judge it, so the grant and the server can both take it without one
//! importing the other.

use std::net::SocketAddr;
use std::sync::Arc;

use writ_proto::binding::{self, Possession, Scheme};
use writ_proto::claims::Confirmation;

use super::mtls::CertIdentity;
use super::unix::UnixConnection;

/// What the listener knows about a connection's peer, attached to every
/// request on it. Handlers never read sockets.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The remote address.
    pub addr: SocketAddr,
    /// The identity of a client certificate that chained to `tls.client_ca`.
    pub client: Option<CertIdentity>,
    /// A Unix-socket caller, pinned at accept; its evidence is re-checked
    /// for each request ([`UnixConnection::current`]).
    pub unix: Option<Arc<UnixConnection>>,
}

impl Peer {
    /// Whether this peer holds a token bound by `cnf`, by writ-proto's
    /// key-binding rule (the SDK's too): the same client certificate, or a
    /// DPoP key this request proved (`proven_jkt`, asked only for a
    /// DPoP-bound token). `scheme` is how the token came in
    /// `Authorization`, `None` when it came in a form.
    pub fn holds(
        &self,
        cnf: Option<&Confirmation>,
        scheme: Option<Scheme>,
        proven_jkt: impl FnOnce() -> Option<String>,
    ) -> bool {
        // Only a certificate-bound token needs the thumbprint computed.
        let certificate = cnf
            .filter(|c| c.x5t_s256.is_some())
            .and(self.client.as_ref())
            .map(CertIdentity::thumbprint);
        let possession = Possession {
            scheme,
            certificate: certificate.as_deref(),
            dpop: || proven_jkt().map(Ok),
        };
        binding::check(cnf, possession).is_ok()
    }
}
