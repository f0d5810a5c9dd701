//! Unix peer credentials: a caller on `server.unix_socket` is attested by
//! the kernel (`SO_PEERCRED`: uid, gid, pid) and by the executable it runs
//! (`/proc/<pid>/exe`: path and SHA-256). The process's start time is read
//! before and after the executable, so a pid reused in between is refused.
//!
//! A connection outlives the moment it was attested: its process may exec
//! another program or exit and leave the socket to a child. So the process
//! is pinned with a pidfd at accept ([`UnixConnection`]) and the evidence is
//! re-checked on every request: the same process (alive, same start time)
//! still running the same executable (path, device, inode, change time).
//!
//! What it cannot tell: who drives a general-purpose program (`python3`,
//! `curl`, a shell) — anyone who can run it as that uid is that principal —
//! and a process that execs between `connect()` and writ's first look.

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

/// Identifies an executable file's content without reading it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ExeId {
    dev: u64,
    ino: u64,
    ctime: i64,
    ctime_nsec: i64,
    size: u64,
}

fn exe_id(pid: i32) -> Option<ExeId> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(format!("/proc/{pid}/exe")).ok()?;
    Some(ExeId {
        dev: m.dev(),
        ino: m.ino(),
        ctime: m.ctime(),
        ctime_nsec: m.ctime_nsec(),
        size: m.size(),
    })
}

/// A Unix-socket connection's peer, attested once at accept and re-checked
/// for every request on the connection.
#[derive(Debug)]
pub struct UnixConnection {
    evidence: UnixPeer,
    start: u64,
    exe: ExeId,
    /// Readable once the process has exited; `None` on kernels without
    /// `pidfd_open` (before 5.3), where the start time alone guards reuse.
    pidfd: Option<std::os::fd::OwnedFd>,
}

impl UnixConnection {
    /// Pins and attests the process the kernel named as the peer.
    pub fn accept(uid: u32, gid: u32, pid: i32) -> Result<Self, AttestError> {
        // Pin first: from here on the pid cannot silently become another process.
        let pidfd = rustix::process::Pid::from_raw(pid).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        let start = start_time(pid).ok_or(AttestError::InvalidClaim("pid"))?;
        let exe = exe_id(pid).ok_or(AttestError::InvalidClaim("exe"))?;
        let evidence = peer_evidence(uid, gid, pid)?;
        if exe_id(pid) != Some(exe) || start_time(pid) != Some(start) {
            return Err(AttestError::PeerChanged);
        }
        Ok(Self {
            evidence,
            start,
            exe,
            pidfd,
        })
    }

    /// The evidence, if the peer is still the process that was attested
    /// running the same executable.
    pub fn current(&self) -> Result<&UnixPeer, AttestError> {
        let pid = self.evidence.pid;
        let exited = self.pidfd.as_ref().is_some_and(|fd| {
            let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
            let zero = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // Fail closed: an error polling counts as gone.
            rustix::event::poll(&mut fds, Some(&zero)).map_or(true, |ready| ready > 0)
        });
        let same_exe = || {
            exe_id(pid) == Some(self.exe)
                && std::fs::read_link(format!("/proc/{pid}/exe"))
                    .is_ok_and(|p| p.to_string_lossy() == self.evidence.exe)
        };
        if exited || start_time(pid) != Some(self.start) || !same_exe() {
            return Err(AttestError::PeerChanged);
        }
        Ok(&self.evidence)
    }
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
    fn this_process_stays_itself_across_requests() {
        let pid = i32::try_from(std::process::id()).unwrap();
        let connection = UnixConnection::accept(0, 0, pid).unwrap();
        assert_eq!(connection.current().unwrap().pid, pid);
        assert!(connection.pidfd.is_some(), "this kernel has pidfd_open");
    }

    #[test]
    fn a_process_that_is_gone_is_refused() {
        // pid_max is at most 2^22 on Linux, so this pid cannot exist.
        assert!(peer_evidence(0, 0, 5_000_000).is_err());
    }
}
