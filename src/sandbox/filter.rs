//! The seccomp allowlist: the system calls a host makes once everything is open.
//!
//! Measured, not guessed: `strace -f` over the end-to-end suites (serve on TUN and TAP, HTTP
//! files and listings, traces to a file and to a pipe, ping, get, replay, signals, a device
//! deleted or set down), then every suite run with the filter on, shows the loop using only
//! reads and writes on descriptors it already has, `poll`, memory management, the HTTP service's `openat2`/`fstat`/`newfstatat`/
//! `getdents64`/`lseek`, and signal handling (signal-hook's handler writes to a socket pair it
//! made before). Everything that makes a new channel out of the process is absent: `socket`,
//! `connect`, `bind`, `execve`, `fork`/`clone`, `ptrace`, `process_vm_*`, `mount`, `bpf`,
//! `setuid` and the like. Anything not listed is trapped: one line on stderr names the call's
//! number, and the process dies of `SIGSYS`.
//!
//! Arguments are checked where it is cheap and matters: memory is never mapped or made
//! executable (`mmap`/`mprotect` without `PROT_EXEC`), `ioctl` only for the handful of
//! requests the standard library and the host use on descriptors (`FIONBIO`, `FIONREAD`,
//! `TCGETS`, `TIOCGWINSZ`), and `kill`/`tgkill` only at this process.

use std::collections::BTreeMap;
use std::io;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::SandboxError;

/// Which program the filter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A host on a device (`serve`, `ping`): descriptors it has, HTTP files beneath a root.
    Host,
    /// A host that also finishes output files at the end (`get -o`, `replay --pcap`): may also
    /// truncate, sync, rename and remove files.
    Output,
}

/// The calls every profile allows, whatever their arguments.
const ALWAYS: &[i64] = &[
    // I/O on descriptors the process already has.
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_pread64,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_pwrite64,
    libc::SYS_lseek,
    libc::SYS_close,
    libc::SYS_fcntl,
    libc::SYS_ppoll,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    // Files beneath an open directory (the HTTP root), and their metadata.
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_getdents64,
    libc::SYS_readlinkat,
    // A panic's message and backtrace (the working directory, for file names).
    libc::SYS_getcwd,
    // Memory.
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_brk,
    libc::SYS_madvise,
    // Signals (signal-hook), time, threads' primitives.
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getresuid,
    libc::SYS_getresgid,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_gettimeofday,
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_getrandom,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// x86_64's older calls that glibc and the standard library still use there.
#[cfg(target_arch = "x86_64")]
const ALWAYS_X86_64: &[i64] = &[
    libc::SYS_poll,
    libc::SYS_open,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_readlink,
];
#[cfg(not(target_arch = "x86_64"))]
const ALWAYS_X86_64: &[i64] = &[];

/// What [`Profile::Output`] adds.
const OUTPUT: &[i64] = &[
    libc::SYS_ftruncate,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_unlinkat,
    libc::SYS_fchmod,
];
#[cfg(target_arch = "x86_64")]
const OUTPUT_X86_64: &[i64] = &[libc::SYS_rename, libc::SYS_unlink];
#[cfg(not(target_arch = "x86_64"))]
const OUTPUT_X86_64: &[i64] = &[];

/// `ioctl` requests allowed (on any descriptor).
const IOCTLS: &[u64] = &[
    libc::FIONBIO,
    libc::FIONREAD,
    libc::TCGETS,
    libc::TIOCGWINSZ,
];

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> io::Result<SeccompCondition> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value).map_err(io::Error::other)
}

fn rule(conditions: Vec<SeccompCondition>) -> io::Result<SeccompRule> {
    SeccompRule::new(conditions).map_err(io::Error::other)
}

/// The filter for `profile`, compiled for this machine.
pub fn compile(profile: Profile) -> Result<BpfProgram, SandboxError> {
    build(profile).map_err(SandboxError::Filter)
}

fn build(profile: Profile) -> io::Result<BpfProgram> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut calls: Vec<i64> = [ALWAYS, ALWAYS_X86_64].concat();
    if profile == Profile::Output {
        calls.extend_from_slice(OUTPUT);
        calls.extend_from_slice(OUTPUT_X86_64);
    }
    for call in calls {
        rules.insert(call, Vec::new());
    }
    // Never executable memory: PROT_EXEC clear in mmap's and mprotect's third argument.
    let no_exec = || {
        rule(vec![cond(
            2,
            SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64),
            0,
        )?])
    };
    rules.insert(libc::SYS_mmap, vec![no_exec()?]);
    rules.insert(libc::SYS_mprotect, vec![no_exec()?]);
    // Signals only to this process (signal-hook re-raises a signal to take its default effect).
    let me = std::process::id() as u64;
    rules.insert(
        libc::SYS_kill,
        vec![rule(vec![cond(0, SeccompCmpOp::Eq, me)?])?],
    );
    rules.insert(
        libc::SYS_tgkill,
        vec![rule(vec![cond(0, SeccompCmpOp::Eq, me)?])?],
    );
    let ioctls = IOCTLS
        .iter()
        .map(|&req| rule(vec![cond(1, SeccompCmpOp::Eq, req)?]))
        .collect::<io::Result<Vec<_>>>()?;
    rules.insert(libc::SYS_ioctl, ioctls);

    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(io::Error::other)?;
    let filter = SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, arch)
        .map_err(io::Error::other)?;
    filter.try_into().map_err(io::Error::other)
}

/// Compile the filter for `profile` and install it for every thread of the process (it also
/// sets `PR_SET_NO_NEW_PRIVS`). From then on a call outside the list ends the process: the
/// kernel traps it (`SIGSYS`), a handler installed here writes one line naming the call's number
/// to stderr, and the process dies of `SIGSYS` (exit status 128 + 31 in a shell).
pub fn install_filter(profile: Profile) -> Result<(), SandboxError> {
    let program = compile(profile)?;
    install_sigsys_handler().map_err(SandboxError::Filter)?;
    seccompiler::apply_filter_all_threads(&program)
        .map_err(|e| SandboxError::Filter(io::Error::other(e)))
}

fn install_sigsys_handler() -> io::Result<()> {
    // SAFETY: a zeroed sigaction with a handler of the SA_SIGINFO signature; the handler only
    // makes async-signal-safe calls, all of them on the allowlist.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigsys as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What a trapped call leads to: one line on stderr, then death by `SIGSYS` (the default
/// action, restored, and the signal raised again; it is delivered when this handler returns).
extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // The kernel's siginfo for SIGSYS: after signo, errno and code (and padding to 8 bytes),
    // the address of the call (a pointer), then the call's number (an int).
    // SAFETY: info points at the kernel's siginfo for this signal.
    let nr = unsafe {
        let base = info as *const u8;
        std::ptr::read_unaligned(base.add(16 + std::mem::size_of::<usize>()) as *const i32)
    };
    let mut line = [0u8; 160];
    let mut n = 0;
    let mut put = |bytes: &[u8]| {
        for &b in bytes {
            if n < line.len() {
                line[n] = b;
                n += 1;
            }
        }
    };
    put(b"tunhost: error: the sandbox stopped system call ");
    let mut digits = [0u8; 12];
    let mut d = digits.len();
    let mut v = i64::from(nr).unsigned_abs();
    loop {
        d -= 1;
        digits[d] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    put(&digits[d..]);
    put(b", which is not on its list: a bug of tunhost (please report it); --no-sandbox runs without the filter\n");
    // SAFETY: write, signal and raise are async-signal-safe and on the allowlist.
    unsafe {
        libc::write(2, line.as_ptr().cast(), n);
        libc::signal(libc::SIGSYS, libc::SIG_DFL);
        libc::raise(libc::SIGSYS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_for_this_machine() {
        let host = compile(Profile::Host).unwrap();
        let output = compile(Profile::Output).unwrap();
        assert!(!host.is_empty());
        assert!(output.len() > host.len(), "the output profile allows more");
    }

    #[test]
    fn nothing_that_opens_a_channel_out_is_allowed() {
        let allowed: Vec<i64> = [ALWAYS, ALWAYS_X86_64, OUTPUT, OUTPUT_X86_64].concat();
        for call in [
            libc::SYS_socket,
            libc::SYS_connect,
            libc::SYS_bind,
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_ptrace,
            libc::SYS_process_vm_writev,
            libc::SYS_setuid,
            libc::SYS_setresuid,
            libc::SYS_mount,
            libc::SYS_bpf,
            libc::SYS_prctl,
            libc::SYS_memfd_create,
        ] {
            assert!(
                !allowed.contains(&call),
                "syscall {call} must not be allowed"
            );
        }
    }
}
