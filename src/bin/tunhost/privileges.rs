//! `--user`, `--group`, `--no-sandbox`: who the process is once everything is open, and the
//! seccomp filter after that.

use std::process::ExitCode;

use clap::Args;
use tunhost::sandbox::{self, Identity, Profile};

use crate::{fail, usage};

#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Privileges")]
pub(crate) struct SandboxArgs {
    /// Once the device, the trace and the files are open, run as USER (a name or a uid) with
    /// no capability. Started as root without this flag, the host becomes `nobody`; `--user
    /// root` keeps uid 0 (not advised: still no capability, but root's own files are writable).
    #[arg(long, value_name = "USER")]
    user: Option<String>,

    /// The group to run as (a name or a gid) [default: USER's primary group].
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,

    /// Keep every privilege and install no seccomp filter: for strace and gdb, which the
    /// filter would stop. Without it, once everything is open the process drops its user and
    /// capabilities, sets no_new_privs and allows only the system calls a host makes (any
    /// other kills it with SIGSYS).
    #[arg(long, conflicts_with_all = ["user", "group"])]
    no_sandbox: bool,

    /// (tests) make a system call the filter does not allow once it is installed.
    #[arg(long, hide = true)]
    sandbox_selftest: bool,
}

/// What the process will do to its privileges, decided before anything is opened.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Whom to become; `None`: stay who we are (still without capabilities).
    to: Option<Identity>,
    /// Who the host will run as, for the start line (looked up now: once the filter is on, the
    /// name service's socket to nscd would be refused).
    who: String,
    sandbox: bool,
    selftest: bool,
}

impl SandboxArgs {
    /// Look the user and group up and check the switch is possible: a typo or a switch only
    /// root may make fails here, exit 2, before any device is touched.
    pub(crate) fn plan(&self) -> Result<Plan, ExitCode> {
        self.plan_with(true)
    }

    /// [`SandboxArgs::plan`] for a run that needs no privilege to begin with (replay): it keeps
    /// its user unless `--user`/`--group` say otherwise (its output is renamed into place in the
    /// user's directory at the end), and still drops every capability and installs the filter.
    pub(crate) fn plan_keeping_user(&self) -> Result<Plan, ExitCode> {
        self.plan_with(false)
    }

    fn plan_with(&self, root_becomes_nobody: bool) -> Result<Plan, ExitCode> {
        if self.no_sandbox {
            return Ok(Plan {
                to: None,
                who: String::new(),
                sandbox: false,
                selftest: false,
            });
        }
        let root = sandbox::running_as_root() && root_becomes_nobody;
        let lookup = |user: &str, group: Option<&str>| {
            Identity::lookup(user, group).map_err(|e| usage(format_args!("--user/--group: {e}")))
        };
        let to = match (&self.user, &self.group) {
            (Some(u), g) => Some(lookup(u, g.as_deref())?),
            (None, None) if root => Some(Identity::nobody()),
            // Not root: stay this user.
            (None, None) => None,
            (None, Some(g)) if root => Some(lookup("nobody", Some(g))?),
            (None, Some(g)) => Some(lookup(&nix::unistd::Uid::effective().to_string(), Some(g))?),
        };
        if let Some(to) = &to {
            sandbox::check_switch(to).map_err(|_| {
                usage(format_args!(
                    "--user {}: only root can switch users; leave out --user/--group to run as yourself",
                    to.user
                ))
            })?;
        }
        let who = match &to {
            Some(id) => format!("{}:{}", id.user, id.group),
            None => {
                let uid = nix::unistd::Uid::effective();
                nix::unistd::User::from_uid(uid)
                    .ok()
                    .flatten()
                    .map_or_else(|| uid.to_string(), |u| u.name)
            }
        };
        Ok(Plan {
            to,
            who,
            sandbox: true,
            selftest: self.sandbox_selftest,
        })
    }
}

impl Plan {
    /// Drop the privileges and install the filter for `profile`. Call it once everything the
    /// run needs is open.
    pub(crate) fn apply(&self, profile: Profile) -> Result<(), ExitCode> {
        if !self.sandbox {
            return Ok(());
        }
        if self.to.as_ref().is_some_and(Identity::is_root) {
            log::warn!(
                "--user root: the host keeps uid 0 (without capabilities); a flaw in it could \
                 write root's files"
            );
        }
        sandbox::drop_privileges(self.to.as_ref()).map_err(|e| fail(tunhost::Error::from(e)))?;
        sandbox::install_filter(profile).map_err(|e| fail(tunhost::Error::from(e)))?;
        Ok(())
    }

    /// For the start line: who the host runs as and whether it is sandboxed.
    pub(crate) fn describe(&self) -> String {
        if !self.sandbox {
            return "sandbox off (--no-sandbox): every privilege kept, no seccomp filter".into();
        }
        format!("running as {}, no capabilities, seccomp on", self.who)
    }

    /// The hidden test hook: a call outside the allowlist, which must kill the process.
    pub(crate) fn selftest(&self) {
        if self.selftest {
            eprintln!("sandbox selftest: calling socket(2), which the filter does not allow");
            // SAFETY: a plain system call; its result does not matter (it should never return).
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
            eprintln!("sandbox selftest: socket(2) returned {fd}: the filter did not bite");
        }
    }
}
