//! What the listener knows about a connection's peer: the evidence a caller
//! brings without sending anything (its address, a verified client
//! certificate, Unix peer credentials). It lives here, beside the attestors
//! that judge it, so the grant and the server can both take it without one
//! importing the other.

use std::net::SocketAddr;
use std::sync::Arc;

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
