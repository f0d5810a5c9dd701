//! # writ-proto: the rules writ's broker and its SDK must agree on, once
//!
//! The broker (`writ`) and the workload SDK (`writ-sdk`) both depend on this
//! crate and neither on the other for these rules, so a fix lands in both.
//!
//! - [`dpop`]: DPoP (RFC 9449) proof verification, its replay cache, and the
//!   key that signs proofs.

pub mod dpop;
