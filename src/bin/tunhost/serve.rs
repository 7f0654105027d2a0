//! `tunhost serve`: host an address on a TUN/TAP device and run services until Ctrl-C.

use std::process::ExitCode;

use clap::Args;
use tunhost::Config;
use tunhost::live::{Live, LiveHost};
use tunhost::sandbox::Profile;
use tunhost::smoltcp::time::Duration;
use tunhost::smoltcp::wire::IpAddress;

use crate::args::{DeviceArgs, LogArgs, ServiceArgs, TraceArgs, colons, partner};
use crate::badlink::BadLinkArgs;
use crate::privileges::SandboxArgs;
use crate::{fail, finish_trace, init_logging, usage};

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    device: DeviceArgs,

    #[command(flatten)]
    services: ServiceArgs,

    #[command(flatten)]
    trace: TraceArgs,

    #[command(flatten)]
    link: BadLinkArgs,

    /// After a packet, keep checking the device this many microseconds before sleeping, e.g. 0
    /// to always sleep. Saves a wake-up per exchange (latency, request/response rates) at the
    /// cost of that much CPU after each burst; an idle host never spins.
    #[arg(long, value_name = "USEC", default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100_000), help_heading = "Tuning")]
    busy_poll: u32,

    #[command(flatten)]
    privileges: SandboxArgs,

    #[command(flatten)]
    log: LogArgs,
}

pub(crate) fn serve(args: ServeArgs) -> ExitCode {
    init_logging(args.log.verbose, args.log.quiet);
    let faults = match args.link.faults(args.services.seed) {
        Ok(f) => f,
        Err(msg) => return usage(msg),
    };
    let plan = match args.privileges.plan() {
        Ok(p) => p,
        Err(code) => return code,
    };
    let resolved = match args.device.resolve() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut live = Live::new(resolved.dev);
    live.host = Config {
        seed: args.services.seed,
        busy_poll: Duration::from_micros(u64::from(args.busy_poll)),
        ..args.device.host_config(resolved.addrs)
    };
    live.services = args.services.config();
    live.services.tcp.tcp = args.link.tcp();
    live.faults = faults;
    if let Err(e) = live.validate() {
        return usage(e);
    }
    live.trace = match args.trace.spec() {
        Ok(t) => t,
        Err(msg) => return fail(msg),
    };
    let mut host = match live.open() {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    // Everything is open: from here on the host needs no privilege.
    if let Err(code) = plan.apply(Profile::Host) {
        return code;
    }
    if !args.log.quiet {
        eprintln!(
            "{}; {}",
            banner(&host, resolved.moved.as_deref(), args.services.seed),
            plan.describe()
        );
    }
    plan.selftest();
    let result = host.run();
    let st = host.tuntap().stats();
    if host.host().device().is_active() {
        let f = host.host().device().stats();
        log::info!("the bad link: in: {}; out: {}", f.inbound, f.outbound);
    }
    finish_trace(host);
    if let Err(e) = result {
        return fail(e);
    }
    log::info!(
        "{} packets in, {} out; {} read errors, {} write errors; {} malformed, {} bad checksums dropped",
        st.rx_packets,
        st.tx_packets,
        st.rx_errors,
        st.tx_errors,
        st.rx_malformed,
        st.rx_bad_checksum
    );
    ExitCode::SUCCESS
}

/// The one line that says what the host is and how to reach it, and why it is not in the first
/// default range (`moved`) when it is not, and a warning when a fixed `seed` makes TCP's initial
/// sequence numbers predictable.
fn banner(live: &LiveHost, moved: Option<&str>, seed: Option<u64>) -> String {
    let host = live.host();
    let t = live.tuntap().tuntap();
    let own = host.iface().ip_addrs();
    let mut addrs: Vec<String> = own.iter().map(|a| a.to_string()).collect();
    if host.config().dhcp.is_some() {
        addrs.insert(0, "IPv4 by DHCP (the lease is logged when it comes)".into());
    }
    let first = own.first().map(|a| a.address());
    let peers: Vec<String> = t.peers().iter().map(|p| p.address().to_string()).collect();
    let kernel = match (peers.is_empty(), own.first()) {
        (false, _) => format!("kernel side {}", peers.join(", ")),
        (true, Some(&a)) => format!(
            "kernel side as configured; e.g. ip addr add {} dev {}",
            partner(a),
            t.name()
        ),
        (true, None) => "kernel side as configured".to_string(),
    };
    let moved = moved.map(|m| format!("; {m}")).unwrap_or_default();
    let mac = host
        .mac()
        .map(|m| format!(", MAC {}", colons(m)))
        .unwrap_or_default();
    let specs = &live.services().services;
    let services: Vec<String> = specs
        .iter()
        .map(|s| {
            let (proto, port) = s.port();
            format!("{} {proto}/{port}", s.name())
        })
        .collect();
    let curl = specs
        .iter()
        .find_map(|s| match s {
            tunhost::services::ServiceSpec::Http(p) => Some(*p),
            _ => None,
        })
        .map(|p| {
            let port = if p == 80 {
                String::new()
            } else {
                format!(":{p}")
            };
            match first {
                Some(IpAddress::Ipv6(a)) => format!(", curl http://[{a}]{port}/"),
                Some(IpAddress::Ipv4(a)) => format!(", curl http://{a}{port}/"),
                None => String::new(),
            }
        })
        .unwrap_or_default();
    let try_ping = first.map_or_else(
        || "the address the DHCP line names".to_string(),
        |a| format!("ping {a}"),
    );
    // The secret of the ISNs (RFC 6528) follows from the seed: anyone who knows it can predict
    // them, and so spoof a handshake.
    let predictable = seed
        .map(|n| format!("; --seed {n}: TCP sequence numbers are predictable, for tests only"))
        .unwrap_or_default();
    format!(
        "serving {} on {} {} (MTU {}{mac}, offload {}, {kernel}{moved}); services: {}; try: {try_ping}{curl}{predictable}",
        addrs.join(", "),
        t.kind(),
        t.name(),
        t.mtu(),
        t.offload(),
        services.join(", "),
    )
}
