//! Least privilege for a process that hosts an address: once the device, the trace and the files
//! it serves are open, it needs no privilege at all.
//!
//! [`drop_privileges`] switches to an unprivileged user (setgroups, setresgid, setresuid), drops
//! every capability (effective, permitted, inheritable, ambient and, while it still can, the
//! bounding set) and sets `PR_SET_NO_NEW_PRIVS`. [`install_filter`] then installs a seccomp
//! allowlist ([`filter`]): the system calls a host's loop, its trace and the HTTP file service
//! make; any other kills the process (`SIGSYS`). Both are process-wide and cannot be undone.
//!
//! The order matters and is the caller's: open everything first (device, trace file, HTTP root,
//! output files), then [`drop_privileges`], then [`install_filter`] last.
//!
//! This layer imports nothing from the rest of the crate.

mod error;
pub mod filter;

use nix::unistd::{Gid, Group, Uid, User};

pub use error::SandboxError;
pub use filter::{Profile, install_filter};

/// The user the process runs as after [`drop_privileges`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user's name (or its number, when the password database has no entry).
    pub user: String,
    /// The group's name (or its number).
    pub group: String,
    /// The user id.
    pub uid: u32,
    /// The group id; also the only supplementary group.
    pub gid: u32,
}

impl Identity {
    /// `user` (a name or a number) and `group` (a name or a number; the user's primary group
    /// when `None`), looked up in the password and group databases. Touches nothing: call it
    /// before opening anything, so that a typo fails first.
    pub fn lookup(user: &str, group: Option<&str>) -> Result<Identity, SandboxError> {
        let found = User::from_name(user).map_err(|e| SandboxError::Lookup {
            what: "user",
            name: user.to_string(),
            source: e.into(),
        })?;
        let (uid, name, primary) = match (found, user.parse::<u32>()) {
            (Some(u), _) => (u.uid.as_raw(), u.name, Some(u.gid.as_raw())),
            (None, Ok(n)) => match User::from_uid(Uid::from_raw(n)).ok().flatten() {
                Some(u) => (n, u.name, Some(u.gid.as_raw())),
                None => (n, n.to_string(), None),
            },
            (None, Err(_)) => {
                return Err(SandboxError::NoSuch {
                    what: "user",
                    name: user.to_string(),
                });
            }
        };
        let (gid, group_name) = match group {
            Some(g) => lookup_group(g)?,
            None => match primary {
                Some(gid) => (gid, group_name_of(gid)),
                // A bare number with no entry: its group of the same number, as `setpriv` does.
                None => (uid, group_name_of(uid)),
            },
        };
        Ok(Identity {
            user: name,
            group: group_name,
            uid,
            gid,
        })
    }

    /// `nobody`, or uid and gid 65534 when the password database has no such user: the
    /// identity a process started as root drops to when it is given none.
    pub fn nobody() -> Identity {
        Identity::lookup("nobody", None).unwrap_or_else(|_| Identity {
            user: "65534".into(),
            group: "65534".into(),
            uid: 65534,
            gid: 65534,
        })
    }

    /// Whether this is root (uid 0).
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{} (uid {}, gid {})",
            self.user, self.group, self.uid, self.gid
        )
    }
}

fn lookup_group(group: &str) -> Result<(u32, String), SandboxError> {
    let found = Group::from_name(group).map_err(|e| SandboxError::Lookup {
        what: "group",
        name: group.to_string(),
        source: e.into(),
    })?;
    match (found, group.parse::<u32>()) {
        (Some(g), _) => Ok((g.gid.as_raw(), g.name)),
        (None, Ok(n)) => Ok((n, group_name_of(n))),
        (None, Err(_)) => Err(SandboxError::NoSuch {
            what: "group",
            name: group.to_string(),
        }),
    }
}

fn group_name_of(gid: u32) -> String {
    Group::from_gid(Gid::from_raw(gid))
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |g| g.name)
}

/// Whether the process runs as root (effective uid 0).
pub fn running_as_root() -> bool {
    Uid::effective().is_root()
}

/// Whether the process may switch to `to`: root may become anyone, anyone else only itself.
/// Check it before opening anything.
pub fn check_switch(to: &Identity) -> Result<(), SandboxError> {
    let me = Uid::effective().as_raw();
    if me == 0 || (to.uid == me && to.gid == Gid::effective().as_raw()) {
        Ok(())
    } else {
        Err(SandboxError::Switch {
            to: to.to_string(),
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        })
    }
}

/// Become `to` (when given), with no capability and no way to gain privileges again.
///
/// With `to`: supplementary groups set to `to.gid` alone, then real, effective and saved gid,
/// then uid. With or without it: every capability dropped from the bounding set (when the
/// process may), the ambient, inheritable, permitted and effective sets, and
/// `PR_SET_NO_NEW_PRIVS` set. A parent-death signal (`PR_SET_PDEATHSIG`), which the kernel
/// clears when the ids change, is set again. Afterwards it checks that it worked: the ids are `to`'s and
/// `setuid(0)` fails.
pub fn drop_privileges(to: Option<&Identity>) -> Result<(), SandboxError> {
    // The bounding set can only be lowered while CAP_SETPCAP is held: first.
    for cap in 0..=last_cap() {
        // SAFETY: prctl with integer arguments; EINVAL/EPERM (no such cap, no CAP_SETPCAP) are
        // fine: the other sets are cleared below either way.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
    }
    // The kernel forgets a parent-death signal when the credentials change: keep the one a
    // parent (a supervisor, a benchmark) asked for, so the host still dies with it.
    let mut pdeathsig: libc::c_int = 0;
    // SAFETY: PR_GET_PDEATHSIG writes one c_int to the pointer.
    unsafe { libc::prctl(libc::PR_GET_PDEATHSIG, &mut pdeathsig as *mut libc::c_int) };
    if let Some(to) = to {
        let gid = Gid::from_raw(to.gid);
        let uid = Uid::from_raw(to.uid);
        let step = |what: &'static str, r: nix::Result<()>| {
            r.map_err(|e| SandboxError::Drop {
                step: what,
                to: to.to_string(),
                source: e.into(),
            })
        };
        if Uid::effective().is_root() {
            step("setgroups", nix::unistd::setgroups(&[gid]))?;
        }
        step("setresgid", nix::unistd::setresgid(gid, gid, gid))?;
        step("setresuid", nix::unistd::setresuid(uid, uid, uid))?;
        if pdeathsig != 0 {
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, pdeathsig as libc::c_ulong) };
        }
    }
    // SAFETY: prctl with integer arguments.
    if unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    } != 0
    {
        let e = std::io::Error::last_os_error();
        // EINVAL: a kernel without ambient capabilities (before 4.3): nothing to clear.
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(SandboxError::Caps(e));
        }
    }
    clear_capabilities().map_err(SandboxError::Caps)?;
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(SandboxError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    if let Some(to) = to
        && !to.is_root()
    {
        let (r, e, s) = ids();
        if [r, e, s] != [to.uid; 3] || nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err(SandboxError::Drop {
                step: "check",
                to: to.to_string(),
                source: std::io::Error::other("root could be regained"),
            });
        }
    }
    Ok(())
}

fn ids() -> (u32, u32, u32) {
    let r = nix::unistd::getresuid().expect("getresuid cannot fail");
    (r.real.as_raw(), r.effective.as_raw(), r.saved.as_raw())
}

/// The highest capability number this kernel knows.
fn last_cap() -> libc::c_ulong {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// `capset` with every set empty (the kernel's version 3 layout: two 32-bit words per set).
fn clear_capabilities() -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [Data::default(); 2];
    // SAFETY: header and two data words as the kernel's capset(2) expects for version 3.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// What `/proc/self/status` says of the process's privileges: for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// The `Uid:` line's four ids (real, effective, saved, filesystem).
    pub uid: Vec<u32>,
    /// The `Gid:` line's four ids.
    pub gid: Vec<u32>,
    /// `CapEff`, as the hex string.
    pub cap_eff: String,
    /// `NoNewPrivs`.
    pub no_new_privs: bool,
    /// `Seccomp`: 0 off, 1 strict, 2 filter.
    pub seccomp: u8,
}

impl Status {
    /// Parse a `/proc/PID/status` text.
    pub fn parse(text: &str) -> Status {
        let mut st = Status::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            let nums = || {
                value
                    .split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            };
            match key {
                "Uid" => st.uid = nums(),
                "Gid" => st.gid = nums(),
                "CapEff" => st.cap_eff = value.to_string(),
                "NoNewPrivs" => st.no_new_privs = value == "1",
                "Seccomp" => st.seccomp = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        st
    }

    /// This process's.
    pub fn current() -> std::io::Result<Status> {
        Ok(Status::parse(&std::fs::read_to_string(
            "/proc/self/status",
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_users_and_groups_by_name_and_number() {
        let root = Identity::lookup("root", None).unwrap();
        assert_eq!((root.uid, root.gid, root.user.as_str()), (0, 0, "root"));
        assert!(root.is_root());
        let by_number = Identity::lookup("0", Some("0")).unwrap();
        assert_eq!((by_number.uid, by_number.gid), (0, 0));
        assert_eq!(by_number.user, "root");
        let nobody = Identity::nobody();
        assert_eq!(nobody.uid, 65534);
        assert!(!nobody.is_root());
        // A number nobody has: kept as the number, its group the same number.
        let bare = Identity::lookup("4000123", None).unwrap();
        assert_eq!(
            (bare.uid, bare.gid, bare.user.as_str()),
            (4000123, 4000123, "4000123")
        );
    }

    #[test]
    fn an_unknown_user_or_group_is_named() {
        let e = Identity::lookup("nosuchuser-tunhost", None).unwrap_err();
        assert_eq!(e.to_string(), "no such user: nosuchuser-tunhost");
        let e = Identity::lookup("root", Some("nosuchgroup-tunhost")).unwrap_err();
        assert_eq!(e.to_string(), "no such group: nosuchgroup-tunhost");
    }

    #[test]
    fn parses_proc_status() {
        let text = "Name:\ttunhost\nUid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\n\
                    CapEff:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n";
        let st = Status::parse(text);
        assert_eq!(st.uid, [65534; 4]);
        assert_eq!(st.gid, [65534; 4]);
        assert_eq!(st.cap_eff, "0000000000000000");
        assert!(st.no_new_privs);
        assert_eq!(st.seccomp, 2);
    }
}
