//! Unix peer credentials: a caller on `server.unix_socket` is attested by
//! the kernel (`SO_PEERCRED`: uid, gid, pid) and by the executable it runs
//! (`/proc/<pid>/exe`: path and SHA-256). The process's start time is read
//! before and after the executable, so a pid reused in between is refused.

use std::collections::BTreeMap;
use std::path::Path;

use super::{AttestError, Attested, Attestor, AttrValue, Evidence};
use crate::model::{AttestationKind, EntityType, Principal};

/// What the kernel and `/proc` say about a Unix-socket peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixPeer {
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Process id.
    pub pid: i32,
    /// The executable's path.
    pub exe: String,
    /// SHA-256 of the executable, lowercase hex.
    pub exe_sha256: String,
}

/// Field 22 of `/proc/<pid>/stat`: the process start time, in clock ticks.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; count after its ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Reads the evidence for a peer the kernel named. Fails when the process
/// is gone or its pid was reused while reading.
pub fn peer_evidence(uid: u32, gid: u32, pid: i32) -> Result<UnixPeer, AttestError> {
    let before = start_time(pid).ok_or(AttestError::InvalidClaim("pid"))?;
    let proc_exe = format!("/proc/{pid}/exe");
    let exe = std::fs::read_link(&proc_exe).map_err(|_| AttestError::InvalidClaim("pid"))?;
    let bytes =
        std::fs::read(Path::new(&proc_exe)).map_err(|_| AttestError::InvalidClaim("exe"))?;
    let after = start_time(pid).ok_or(AttestError::InvalidClaim("pid"))?;
    if before != after {
        return Err(AttestError::InvalidClaim("pid"));
    }
    Ok(UnixPeer {
        uid,
        gid,
        pid,
        exe: exe.to_string_lossy().into_owned(),
        exe_sha256: crate::digest::sha256_hex(&bytes),
    })
}

/// Attests Unix-socket callers (CONTRACT section 1): principal
/// `spiffe://<trust_domain>/unix/uid/<uid>`.
#[derive(Debug)]
pub struct UnixAttestor {
    trust_domain: String,
}

impl UnixAttestor {
    /// Principals in `trust_domain` (`server.trust_domain`).
    pub fn new(trust_domain: &str) -> Self {
        Self {
            trust_domain: trust_domain.to_owned(),
        }
    }
}

impl Attestor for UnixAttestor {
    fn kind(&self) -> AttestationKind {
        AttestationKind::Unix
    }

    fn attest(&self, evidence: &Evidence<'_>) -> Result<Attested, AttestError> {
        let Evidence::UnixPeer(p) = evidence else {
            return Err(AttestError::Malformed);
        };
        let principal =
            Principal::new(format!("spiffe://{}/unix/uid/{}", self.trust_domain, p.uid))
                .map_err(|_| AttestError::InvalidClaim("uid"))?;
        let attributes = BTreeMap::from([
            ("issuer".to_owned(), AttrValue::String("unix".into())),
            ("unix_uid".to_owned(), AttrValue::Long(i64::from(p.uid))),
            ("unix_gid".to_owned(), AttrValue::Long(i64::from(p.gid))),
            ("pid".to_owned(), AttrValue::Long(i64::from(p.pid))),
            ("exe".to_owned(), AttrValue::String(p.exe.clone())),
            (
                "exe_sha256".to_owned(),
                AttrValue::String(p.exe_sha256.clone()),
            ),
        ]);
        Ok(Attested {
            principal,
            entity_type: EntityType::Workload,
            kind: AttestationKind::Unix,
            attributes,
            expires_at: u64::MAX,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_its_own_evidence() {
        let me = peer_evidence(0, 0, i32::try_from(std::process::id()).unwrap()).unwrap();
        assert!(me.exe.contains("writ"), "{}", me.exe);
        assert_eq!(me.exe_sha256.len(), 64);
    }

    #[test]
    fn a_process_that_is_gone_is_refused() {
        // pid_max is at most 2^22 on Linux, so this pid cannot exist.
        assert!(peer_evidence(0, 0, 5_000_000).is_err());
    }
}
