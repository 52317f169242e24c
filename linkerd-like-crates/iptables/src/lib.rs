//! The rules `conduit-init` programs into a pod's network namespace.
//!
//! Two chains in the `nat` table, as a sidecar's init container sets them up:
//!
//! - `CONDUIT_INBOUND`, jumped to from `PREROUTING`: TCP arriving for the pod is redirected to
//!   the proxy's inbound port, except the ports to ignore (by default the proxy's own admin
//!   and tap ports, so probes and the controller reach the proxy itself).
//! - `CONDUIT_OUTBOUND`, jumped to from `OUTPUT`: TCP the pod sends is redirected to the
//!   proxy's outbound port, except traffic of the proxy's own user (or it would loop), traffic
//!   over loopback, and the ports to ignore.
//!
//! `REDIRECT` keeps the original destination in conntrack, where the proxy reads it back with
//! `SO_ORIGINAL_DST`. Installing first removes whatever an earlier run left, so running twice
//! leaves one copy of the rules.

#![forbid(unsafe_code)]

use std::fmt;
use std::process::Command;
use std::str::FromStr;

/// The chain for inbound redirection.
pub const INBOUND_CHAIN: &str = "CONDUIT_INBOUND";
/// The chain for outbound redirection.
pub const OUTBOUND_CHAIN: &str = "CONDUIT_OUTBOUND";

/// A port or an inclusive range of ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port.
    pub last: u16,
}

/// A port list that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid port or range {0:?}: expected a port (1-65535) or a range such as 8000-8010")]
pub struct InvalidPorts(String);

impl FromStr for PortRange {
    type Err = InvalidPorts;
    fn from_str(s: &str) -> Result<Self, InvalidPorts> {
        let bad = || InvalidPorts(s.to_string());
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || first > last {
            return Err(bad());
        }
        Ok(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    /// In iptables' syntax: `80` or `8000:8010`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}:{}", self.first, self.last)
        }
    }
}

/// Parses a comma-separated list of ports and ranges.
pub fn parse_ports(list: &str) -> Result<Vec<PortRange>, InvalidPorts> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

/// What to redirect where.
#[derive(Clone, Debug)]
pub struct Options {
    /// The proxy's inbound port.
    pub inbound_port: u16,
    /// The proxy's outbound port.
    pub outbound_port: u16,
    /// The user the proxy runs as; its traffic is never redirected.
    pub proxy_uid: u32,
    /// Destination ports of inbound traffic left alone.
    pub inbound_ports_to_ignore: Vec<PortRange>,
    /// Destination ports of outbound traffic left alone.
    pub outbound_ports_to_ignore: Vec<PortRange>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            inbound_port: 4143,
            outbound_port: 4140,
            proxy_uid: 2102,
            inbound_ports_to_ignore: vec![PortRange {
                first: 4190,
                last: 4191,
            }],
            outbound_ports_to_ignore: Vec::new(),
        }
    }
}

/// One `iptables` invocation's arguments.
pub type Rule = Vec<String>;

fn rule(args: &[&str]) -> Rule {
    args.iter().map(|s| s.to_string()).collect()
}

/// The rules that install redirection, in order.
pub fn install_rules(opts: &Options) -> Vec<Rule> {
    let mut rules = vec![rule(&["-t", "nat", "-N", INBOUND_CHAIN])];
    for ports in &opts.inbound_ports_to_ignore {
        let p = ports.to_string();
        rules.push(rule(&[
            "-t",
            "nat",
            "-A",
            INBOUND_CHAIN,
            "-p",
            "tcp",
            "--dport",
            &p,
            "-j",
            "RETURN",
        ]));
    }
    let inbound = opts.inbound_port.to_string();
    rules.push(rule(&[
        "-t",
        "nat",
        "-A",
        INBOUND_CHAIN,
        "-p",
        "tcp",
        "-j",
        "REDIRECT",
        "--to-ports",
        &inbound,
    ]));
    rules.push(rule(&[
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-p",
        "tcp",
        "-j",
        INBOUND_CHAIN,
    ]));

    rules.push(rule(&["-t", "nat", "-N", OUTBOUND_CHAIN]));
    let uid = opts.proxy_uid.to_string();
    rules.push(rule(&[
        "-t",
        "nat",
        "-A",
        OUTBOUND_CHAIN,
        "-m",
        "owner",
        "--uid-owner",
        &uid,
        "-j",
        "RETURN",
    ]));
    rules.push(rule(&[
        "-t",
        "nat",
        "-A",
        OUTBOUND_CHAIN,
        "-o",
        "lo",
        "-j",
        "RETURN",
    ]));
    for ports in &opts.outbound_ports_to_ignore {
        let p = ports.to_string();
        rules.push(rule(&[
            "-t",
            "nat",
            "-A",
            OUTBOUND_CHAIN,
            "-p",
            "tcp",
            "--dport",
            &p,
            "-j",
            "RETURN",
        ]));
    }
    let outbound = opts.outbound_port.to_string();
    rules.push(rule(&[
        "-t",
        "nat",
        "-A",
        OUTBOUND_CHAIN,
        "-p",
        "tcp",
        "-j",
        "REDIRECT",
        "--to-ports",
        &outbound,
    ]));
    rules.push(rule(&[
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "-j",
        OUTBOUND_CHAIN,
    ]));
    rules
}

/// The rules that remove redirection. Each may fail harmlessly when there is nothing to
/// remove; the jump deletions are repeated until they fail, in case several copies exist.
pub fn uninstall_rules() -> Vec<Rule> {
    vec![
        rule(&[
            "-t",
            "nat",
            "-D",
            "PREROUTING",
            "-p",
            "tcp",
            "-j",
            INBOUND_CHAIN,
        ]),
        rule(&[
            "-t",
            "nat",
            "-D",
            "OUTPUT",
            "-p",
            "tcp",
            "-j",
            OUTBOUND_CHAIN,
        ]),
        rule(&["-t", "nat", "-F", INBOUND_CHAIN]),
        rule(&["-t", "nat", "-X", INBOUND_CHAIN]),
        rule(&["-t", "nat", "-F", OUTBOUND_CHAIN]),
        rule(&["-t", "nat", "-X", OUTBOUND_CHAIN]),
    ]
}

/// A rule that `iptables` refused.
#[derive(Debug, thiserror::Error)]
#[error("`{iptables} {}` failed: {stderr}", .rule.join(" "))]
pub struct ApplyError {
    /// The program run.
    pub iptables: String,
    /// The rule.
    pub rule: Rule,
    /// What it said.
    pub stderr: String,
}

fn run(iptables: &str, rule: &Rule) -> Result<(), ApplyError> {
    let fail = |stderr: String| ApplyError {
        iptables: iptables.to_string(),
        rule: rule.clone(),
        stderr,
    };
    let out = Command::new(iptables)
        .args(rule)
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Removes the rules with `iptables`; absent rules are not an error.
pub fn uninstall(iptables: &str) -> Result<(), ApplyError> {
    for (i, r) in uninstall_rules().iter().enumerate() {
        let is_jump = i < 2;
        // At most a few stale copies of a jump can exist; bound the loop anyway.
        for _ in 0..if is_jump { 16 } else { 1 } {
            if run(iptables, r).is_err() {
                break;
            }
        }
    }
    Ok(())
}

/// Installs the rules with `iptables`, replacing any earlier installation.
pub fn install(iptables: &str, opts: &Options) -> Result<(), ApplyError> {
    uninstall(iptables)?;
    for r in install_rules(opts) {
        run(iptables, &r)?;
    }
    Ok(())
}

/// Renders rules as shell lines, for `--dry-run`.
pub fn render(iptables: &str, rules: &[Rule]) -> String {
    rules
        .iter()
        .map(|r| format!("{iptables} {}\n", r.join(" ")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_ranges_parse() {
        assert_eq!(
            parse_ports("25, 8000-8010,").unwrap(),
            vec![
                PortRange {
                    first: 25,
                    last: 25
                },
                PortRange {
                    first: 8000,
                    last: 8010
                }
            ]
        );
        assert!(parse_ports("0").is_err());
        assert!(parse_ports("10-5").is_err());
        assert!(parse_ports("http").is_err());
        assert!(parse_ports("70000").is_err());
        assert_eq!(PortRange { first: 1, last: 3 }.to_string(), "1:3");
    }

    #[test]
    fn default_rules() {
        let text = render("iptables", &install_rules(&Options::default()));
        let expected = "\
iptables -t nat -N CONDUIT_INBOUND
iptables -t nat -A CONDUIT_INBOUND -p tcp --dport 4190:4191 -j RETURN
iptables -t nat -A CONDUIT_INBOUND -p tcp -j REDIRECT --to-ports 4143
iptables -t nat -A PREROUTING -p tcp -j CONDUIT_INBOUND
iptables -t nat -N CONDUIT_OUTBOUND
iptables -t nat -A CONDUIT_OUTBOUND -m owner --uid-owner 2102 -j RETURN
iptables -t nat -A CONDUIT_OUTBOUND -o lo -j RETURN
iptables -t nat -A CONDUIT_OUTBOUND -p tcp -j REDIRECT --to-ports 4140
iptables -t nat -A OUTPUT -p tcp -j CONDUIT_OUTBOUND
";
        assert_eq!(text, expected);
    }

    #[test]
    fn ignored_ports_return_before_the_redirect() {
        let opts = Options {
            inbound_ports_to_ignore: parse_ports("22").unwrap(),
            outbound_ports_to_ignore: parse_ports("3306,6000-6010").unwrap(),
            proxy_uid: 1337,
            ..Options::default()
        };
        let rules = install_rules(&opts);
        let pos = |needle: &str| {
            rules
                .iter()
                .position(|r| r.join(" ").contains(needle))
                .unwrap_or_else(|| panic!("no rule with {needle}"))
        };
        assert!(pos("CONDUIT_INBOUND -p tcp --dport 22 -j RETURN") < pos("--to-ports 4143"));
        assert!(pos("--dport 3306 -j RETURN") < pos("--to-ports 4140"));
        assert!(pos("--dport 6000:6010 -j RETURN") < pos("--to-ports 4140"));
        assert!(pos("--uid-owner 1337") < pos("--to-ports 4140"));
    }

    #[test]
    fn uninstall_removes_jumps_before_chains() {
        let rules = uninstall_rules();
        let flat: Vec<String> = rules.iter().map(|r| r.join(" ")).collect();
        let jump = flat.iter().position(|r| r.contains("-D OUTPUT")).unwrap();
        let delete = flat
            .iter()
            .position(|r| r.contains("-X CONDUIT_OUTBOUND"))
            .unwrap();
        assert!(jump < delete);
    }
}
