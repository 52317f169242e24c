//! `conduit-init`: programs the nat table of the current network namespace so that the pod's
//! TCP traffic flows through its proxy. See the `conduit-iptables` crate for the rules.

#![forbid(unsafe_code)]

use clap::Parser;
use conduit_iptables::{
    install, install_rules, render, uninstall, uninstall_rules, Options, PortRange,
};
use std::process::ExitCode;

/// Redirects a pod's inbound and outbound TCP through its Conduit proxy.
#[derive(Debug, Parser)]
#[command(name = "conduit-init", version)]
struct Args {
    /// The proxy's inbound port.
    #[arg(long, default_value_t = 4143)]
    inbound_port: u16,
    /// The proxy's outbound port.
    #[arg(long, default_value_t = 4140)]
    outbound_port: u16,
    /// The UID the proxy runs as; its own traffic is never redirected.
    #[arg(long, default_value_t = 2102)]
    proxy_uid: u32,
    /// Inbound destination ports to leave alone (comma-separated, ranges as 8000-8010).
    #[arg(long, default_value = "4190-4191", value_delimiter = ',')]
    inbound_ports_to_ignore: Vec<PortRange>,
    /// Outbound destination ports to leave alone (comma-separated, ranges as 8000-8010).
    #[arg(long, value_delimiter = ',')]
    outbound_ports_to_ignore: Vec<PortRange>,
    /// Print the rules instead of applying them.
    #[arg(long)]
    dry_run: bool,
    /// Remove the rules instead of installing them.
    #[arg(long)]
    uninstall: bool,
    /// The iptables program to run.
    #[arg(long, default_value = "iptables")]
    iptables: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let opts = Options {
        inbound_port: args.inbound_port,
        outbound_port: args.outbound_port,
        proxy_uid: args.proxy_uid,
        inbound_ports_to_ignore: args.inbound_ports_to_ignore,
        outbound_ports_to_ignore: args.outbound_ports_to_ignore,
    };
    if args.dry_run {
        let rules = if args.uninstall {
            uninstall_rules()
        } else {
            install_rules(&opts)
        };
        print!("{}", render(&args.iptables, &rules));
        return ExitCode::SUCCESS;
    }
    let result = if args.uninstall {
        uninstall(&args.iptables)
    } else {
        install(&args.iptables, &opts)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conduit-init: {e}");
            ExitCode::FAILURE
        }
    }
}
