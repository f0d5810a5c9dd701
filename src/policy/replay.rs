//! A recorded decision as an explain request: the audit record's principal
//! (type, id, attributes), target, scopes and context (time, address,
//! attestation kind, requested lifetime, key binding, delegation depth),
//! with a note for each input the record did not keep and what was assumed
//! instead. `writ policy explain --decision` and `writ policy diff` decide
//! recorded requests again through it.

use std::collections::BTreeMap;

use super::explain::{ExplainContext, ExplainPrincipal, ExplainRequest, ExplainTransaction};
use crate::audit::Recorded;

/// A recorded decision rebuilt as a request, with what had to be assumed.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The request, as close to the recorded one as the record allows.
    pub request: ExplainRequest,
    /// One sentence per input the record did not keep.
    pub unrecorded: Vec<String>,
}

/// Why a record cannot be decided again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// Not a token request (an admin action, an introspection...).
    #[error("decision {id} is a {action} decision, not a token request")]
    NotMint {
        /// The decision id.
        id: String,
        /// Its recorded action.
        action: String,
    },
    /// The request was refused before Cedar saw it.
    #[error(
        "decision {id} was refused before a policy decided it ({error}): there is nothing to re-evaluate"
    )]
    NotDecided {
        /// The decision id.
        id: String,
        /// The recorded error.
        error: String,
    },
}

impl Replay {
    /// Rebuilds the request `recorded` describes.
    pub fn of(recorded: &Recorded) -> Result<Self, ReplayError> {
        if recorded.action != "mint" {
            return Err(ReplayError::NotMint {
                id: recorded.decision_id.clone(),
                action: recorded.action.clone(),
            });
        }
        let (Some(principal), Some(target)) = (&recorded.principal, &recorded.target) else {
            return Err(not_decided(recorded));
        };
        if recorded.scopes_requested.is_empty() {
            return Err(not_decided(recorded));
        }
        let mut unrecorded = Vec::new();
        let (entity_type, guessed) = recorded.principal_type_or_guess();
        if guessed {
            unrecorded.push(format!(
                "principal type not recorded (a record from an older writ); assumed {entity_type}"
            ));
        }
        let entity_type = entity_type.to_owned();
        if recorded.principal_type.is_none() && recorded.attrs.is_empty() {
            unrecorded.push(
                "principal attributes not recorded; decided with only those entities.json gives"
                    .to_owned(),
            );
        }
        let source_ip = match recorded.source_ip.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                unrecorded.push(format!(
                    "source address {:?} is not an IP address; assumed 127.0.0.1",
                    recorded.source_ip
                ));
                None
            }
        };
        if recorded.attestation.is_none() {
            unrecorded.push("attestation kind not recorded; assumed the default".to_owned());
        }
        if recorded.requested_ttl.is_none() {
            unrecorded
                .push("requested lifetime not recorded; assumed tokens.default_ttl".to_owned());
        }
        if recorded.sender_constrained.is_none() {
            unrecorded.push("key binding not recorded; assumed a bearer token".to_owned());
        }
        let delegation_depth = match recorded.delegation_depth {
            Some(depth) => depth,
            None => {
                let depth = u32::try_from(recorded.act.len()).unwrap_or(u32::MAX);
                if depth > 0 {
                    unrecorded.push(format!(
                        "delegation depth not recorded; assumed {depth} from the act chain"
                    ));
                }
                depth
            }
        };
        let actor = recorded.actor.as_ref().map(|a| ExplainPrincipal {
            entity_type: a.entity_type.clone(),
            id: a.id.clone(),
            attrs: a.attrs.clone(),
            parents: Vec::new(),
        });
        if actor.is_none() && !recorded.act.is_empty() {
            unrecorded.push(format!(
                "the acting agent ({}) not recorded (a record from an older writ): policies that read context.actor see none",
                recorded.act.join(" <- ")
            ));
        }
        Ok(Self {
            request: ExplainRequest {
                principal: ExplainPrincipal {
                    entity_type,
                    id: principal.clone(),
                    attrs: recorded
                        .attrs
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<BTreeMap<_, _>>(),
                    parents: Vec::new(),
                },
                target: target.clone(),
                scopes: recorded.scopes_requested.clone(),
                context: ExplainContext {
                    now: Some(recorded.time.clone()),
                    source_ip,
                    attestation: recorded.attestation.clone(),
                    sender_constrained: recorded.sender_constrained,
                    delegation_depth: Some(delegation_depth),
                    requested_ttl: recorded.requested_ttl,
                    actor,
                    transaction: recorded.txn_requester.as_ref().map(|requester| {
                        ExplainTransaction {
                            requester: requester.clone(),
                            chain: recorded.txn_chain.unwrap_or(1),
                        }
                    }),
                },
            },
            unrecorded,
        })
    }
}

fn not_decided(recorded: &Recorded) -> ReplayError {
    ReplayError::NotDecided {
        id: recorded.decision_id.clone(),
        error: recorded
            .error
            .clone()
            .unwrap_or_else(|| "no principal, target or scope recorded".to_owned()),
    }
}
