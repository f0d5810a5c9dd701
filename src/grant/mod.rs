//! The grant: one token request, from its form to a minted token or a
//! refusal. So far it holds what the grant and the server share: the
//! [`Refusal`] every step may end in (rendered by the server) and the
//! [`Form`] a request arrives as, so neither imports the other.

mod form;
mod refusal;

pub use form::Form;
pub use refusal::Refusal;
