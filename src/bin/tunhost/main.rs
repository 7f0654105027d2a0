//! `tunhost`: the command-line shell over the library. It parses arguments, asks the library to
//! build and run a host, and maps errors to one line on stderr and an exit code (2: usage, 1: the
//! run failed). Each subcommand has its own file; the flags they share are in `args`.

mod args;
mod badlink;
mod client;
mod privileges;
mod replay;
mod serve;

use std::fmt::Display;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Parser, Subcommand};
use tunhost::Error;
use tunhost::link::LinkError;
use tunhost::live::LiveHost;
use tunhost::replay::ReplayError;

const AFTER_HELP: &str = "\
Opening or creating a TUN/TAP device needs root or CAP_NET_ADMIN (e.g. `sudo tunhost serve`).
Once the device, the trace and the files are open, the host runs as nobody (or --user), with no
capability and a seccomp filter that allows only the system calls a host makes (--no-sandbox
turns that off, for strace or gdb). No root at all: have root make a device for you, e.g.
  sudo ip tuntap add dev tun9 mode tun user $USER && sudo ip addr add 203.0.113.1/24 dev tun9 \\
    && sudo ip link set tun9 up
then `tunhost serve --tun tun9 --addr 203.0.113.2/24` needs no privilege.

Examples:
  sudo tunhost serve
      TUN device tunhost0, host 192.0.2.2/24, kernel side 192.0.2.1/24, echo 7 (TCP+UDP),
      discard 9, chargen 19, HTTP 80 (status page). Then: ping 192.0.2.2; curl 192.0.2.2
      (If the machine uses 192.0.2.0/24, the host is .2 of 198.51.100.0/24 or 203.0.113.0/24,
      the first free: the start line says.)
  sudo tunhost serve --http 8080 --root ./www
      Serve the files below ./www over HTTP/1.1 on port 8080: curl http://192.0.2.2:8080/
  sudo tunhost serve --tap tap0 --addr 198.51.100.2/24 --peer 198.51.100.1/24 --echo 7
      The same on a TAP device: the kernel finds the host's MAC by ARP.
  sudo ip tuntap add dev tun9 mode tun && sudo ip addr add 203.0.113.1/24 dev tun9 \\
    && sudo ip link set tun9 up && sudo tunhost serve --tun tun9 --addr 203.0.113.2/24
      Attach to a device that already exists and whose kernel side you configured yourself.";

#[derive(Parser, Debug)]
#[command(
    name = "tunhost",
    version,
    about = "Host your own IP address in userspace on a Linux TUN or TAP device",
    long_about = "Host your own IP address in userspace on a Linux TUN or TAP device.\n\n\
        tunhost opens a TUN (IP packets) or TAP (Ethernet frames) device and answers on it with \
        its own userspace TCP/IP stack (smoltcp): ARP, ping, TCP and UDP services. The kernel on \
        the other side of the device is the peer: ping, nc, curl and ordinary sockets talk to \
        the host as to another machine.",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Host an address on a TUN/TAP device and run services on it until Ctrl-C.
    #[command(after_help = AFTER_HELP)]
    Serve(serve::ServeArgs),
    /// Play a capture through the host offline, on a virtual clock, and trace its replies.
    #[command(after_help = replay::REPLAY_AFTER_HELP)]
    Replay(replay::ReplayArgs),
    /// Send ICMP echo requests from the userspace host, like ping(8).
    #[command(after_help = client::PING_HELP)]
    Ping(client::PingArgs),
    /// HTTP/1.1 GET from the userspace host; the body goes to stdout or -o FILE.
    #[command(after_help = client::GET_HELP)]
    Get(client::GetArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            return usage(clap_line(&e));
        }
    };
    match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::Replay(args) => replay::replay(args),
        Command::Ping(args) => client::ping(args),
        Command::Get(args) => client::get(args),
    }
}

/// One line from clap's error, built from what it knows (the flag, the value, why) rather than
/// from its rendered text.
fn clap_line(e: &clap::Error) -> String {
    let text = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(v)) => v.join(", "),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let arg = text(ContextKind::InvalidArg);
    let value = text(ContextKind::InvalidValue);
    let why = std::error::Error::source(e).map(|s| s.to_string());
    match e.kind() {
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => match why {
            Some(why) => format!("invalid value '{value}' for '{arg}': {why}"),
            None => {
                let valid = text(ContextKind::ValidValue);
                format!("invalid value '{value}' for '{arg}' (possible values: {valid})")
            }
        },
        ErrorKind::ArgumentConflict => format!(
            "the argument '{arg}' cannot be used with '{}'",
            text(ContextKind::PriorArg)
        ),
        ErrorKind::MissingRequiredArgument => {
            format!("the following required arguments were not provided: {arg}")
        }
        ErrorKind::UnknownArgument => format!("unexpected argument '{arg}'"),
        ErrorKind::InvalidSubcommand => {
            format!(
                "unrecognized subcommand '{}'",
                text(ContextKind::InvalidSubcommand)
            )
        }
        ErrorKind::TooManyValues | ErrorKind::TooFewValues | ErrorKind::WrongNumberOfValues => {
            format!("wrong number of values for '{arg}'")
        }
        kind => match kind.as_str() {
            Some(what) if arg.is_empty() => what.to_string(),
            Some(what) => format!("{what}: '{arg}'"),
            None => "invalid arguments".to_string(),
        },
    }
}

/// A usage error found after parsing: one line, exit 2.
fn usage(msg: impl Display) -> ExitCode {
    eprintln!("tunhost: error: {msg} (see tunhost --help)");
    ExitCode::from(2)
}

/// A failed run: the error in one line, with the flag to try where one helps; exit 1.
fn fail(e: impl Into<Failure>) -> ExitCode {
    eprintln!("tunhost: error: {}", e.into().0);
    ExitCode::from(1)
}

/// What `fail` prints: the library's message plus the CLI's advice.
struct Failure(String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let advice = match &e {
            Error::Link(LinkError::Busy { .. }) => {
                " (pick another name with --tun/--tap, or stop that process)".to_string()
            }
            Error::Link(LinkError::WrongKind { device, wanted }) => {
                format!(" (use --{} {device}, or another name)", wanted.other())
            }
            Error::Link(LinkError::Permission { .. }) if tunhost::sandbox::running_as_root() => {
                String::new()
            }
            Error::Link(LinkError::Permission { device, .. }) => format!(
                " (try sudo, or have root make {device} for you, configured and up: \
                 ip tuntap add dev {device} mode tun user $USER; see tunhost --help)"
            ),
            Error::Replay(ReplayError::MacOnIpCapture) => {
                return Failure(
                    "--mac is for Ethernet captures; this capture holds IP packets (replayed \
                     on an IP host)"
                        .into(),
                );
            }
            _ => String::new(),
        };
        Failure(format!("{e}{advice}"))
    }
}

macro_rules! failure_from {
    ($($t:ty),*) => {
        $(impl From<$t> for Failure {
            fn from(e: $t) -> Self {
                Error::from(e).into()
            }
        })*
    };
}

failure_from!(ReplayError, tunhost::client::ClientError);

impl From<String> for Failure {
    fn from(msg: String) -> Self {
        Failure(msg)
    }
}

impl From<tunhost::client::http::OutputError> for Failure {
    fn from(e: tunhost::client::http::OutputError) -> Self {
        Failure(e.to_string())
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "tunhost=info,smoltcp=warn",
        (_, 1) => "tunhost=debug,smoltcp=info",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_timestamp_millis()
        .init();
}

/// Flush the trace of a live host and say how it went.
fn finish_trace(host: LiveHost) {
    let Some(report) = host.finish() else {
        return;
    };
    let (label, stats) = (&report.label, report.stats);
    log::info!(
        "trace {label}: {} packets ({} read from the device, {} written to it)",
        stats.inbound + stats.outbound,
        stats.inbound,
        stats.outbound
    );
    if stats.lost_slow > 0 {
        log::warn!(
            "trace {label}: {} packets not recorded: the reader of {label} was too slow",
            stats.lost_slow
        );
    }
    let failed = stats.lost.saturating_sub(stats.lost_slow);
    if failed > 0 || report.result.is_err() {
        log::error!(
            "trace {label}: {failed} packets could not be written to the trace (the first write \
             error was reported when it happened)"
        );
    }
}
