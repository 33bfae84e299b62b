//! [`Namespaces`]: the network of a [`NatsCluster`] whose servers can be
//! cut off from one another. A server on 127.0.0.1 in the root namespace
//! cannot be; so each server runs in a network namespace of its own,
//! joined by a veth pair to a bridge in the root namespace, on a /24 of
//! its own. The sluice nodes and the tests stay in the root namespace and
//! reach the servers over the bridge (its address is the subnet's `.1`).
//! Setting a server's veth down cuts it off from everyone; up, it is back.
//!
//! Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2's `ip`;
//! [`namespaces_unavailable`] says why not when they are missing. Names
//! carry the process id and a counter, so parallel runs do not clash, and
//! everything made is removed when dropped, after a failure too.
//!
//! [`NatsCluster`]: super::NatsCluster

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;

/// Numbers the networks of this process (and the probes).
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Subnets tried before giving up: `10.200.0.0/24` to `10.239.255.0/24`,
/// starting from one derived from the process id.
const SUBNET_CANDIDATES: u32 = 40 * 256;
/// How many of them are looked at for one not in use on this machine.
const SUBNET_ATTEMPTS: u32 = 64;

/// One server's namespace: its name, the root end of its veth pair (on
/// the bridge) and its address.
struct Member {
    netns: String,
    veth: String,
    addr: Ipv4Addr,
}

/// A bridge and a namespace per server; removed when dropped.
pub(super) struct Namespaces {
    tag: String,
    subnet: [u8; 3],
    /// `None` until created.
    bridge: Option<String>,
    members: Vec<Member>,
}

/// Runs `ip args`: its output, or an error with the command and what it
/// printed.
fn ip(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("failed to run `ip` (iproute2)")?;
    anyhow::ensure!(
        output.status.success(),
        "`ip {}` failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A short tag unique to this process and call: the process id and a
/// counter in hex (interface names may not exceed 15 bytes).
fn unique_tag() -> (u32, u32, String) {
    let (pid, n) = (std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    (pid, n, format!("{pid:x}{n:x}"))
}

/// Candidate `i` of the subnets for process `pid`'s `n`-th network.
fn subnet_candidate(pid: u32, n: u32, i: u32) -> [u8; 3] {
    let k = (pid.wrapping_mul(31).wrapping_add(n.wrapping_mul(7)) + i * 97) % SUBNET_CANDIDATES;
    [10, 200 + (k / 256) as u8, (k % 256) as u8]
}

/// A /24 that no address or route of this machine uses yet.
fn free_subnet(pid: u32, n: u32) -> anyhow::Result<[u8; 3]> {
    let used = ip(&["-4", "-o", "addr", "show"])? + &ip(&["-4", "route", "show"])?;
    (0..SUBNET_ATTEMPTS)
        .map(|i| subnet_candidate(pid, n, i))
        .find(|[a, b, c]| !used.contains(&format!("{a}.{b}.{c}.")))
        .context("no free 10.2xx.x.0/24 subnet for the namespaces")
}

/// Why network namespaces cannot be used here, or `None` when they can:
/// tries to make a namespace and a veth pair into it, then removes both.
pub fn namespaces_unavailable() -> Option<String> {
    let (_, _, tag) = unique_tag();
    let netns = format!("sluice-probe-{tag}");
    let veth = format!("slq{tag}");
    let made = ip(&["netns", "add", &netns]).and_then(|_| {
        let peer = format!("slr{tag}");
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", &peer, "netns", &netns,
        ])
    });
    let _ = ip(&["link", "del", &veth]);
    let _ = ip(&["netns", "del", &netns]);
    made.err().map(|e| format!("{e:#}"))
}

impl Namespaces {
    /// A bridge and `count` namespaces joined to it, each with an address.
    /// What was made before a failure is removed.
    pub fn create(count: usize) -> anyhow::Result<Namespaces> {
        let (pid, n, tag) = unique_tag();
        let mut net = Namespaces {
            subnet: free_subnet(pid, n)?,
            bridge: None,
            members: Vec::with_capacity(count),
            tag,
        };
        let bridge = format!("slb{}", net.tag);
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        net.bridge = Some(bridge.clone());
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.host(1)),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..count {
            net.add_member(i, &bridge)
                .with_context(|| format!("failed to make the namespace of server {}", i + 1))?;
        }
        Ok(net)
    }

    /// `.k` of the subnet.
    fn host(&self, k: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, k)
    }

    fn add_member(&mut self, i: usize, bridge: &str) -> anyhow::Result<()> {
        let member = Member {
            netns: format!("sluice-{}-n{}", self.tag, i + 1),
            veth: format!("slv{}{i}", self.tag),
            addr: self.host(2 + i as u8),
        };
        let peer = format!("slp{}{i}", self.tag);
        ip(&["netns", "add", &member.netns])?;
        let (netns, veth) = (member.netns.clone(), member.veth.clone());
        // Kept from here on, so that a failure below removes it too.
        self.members.push(member);
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", &peer, "netns", &netns,
        ])?;
        ip(&["link", "set", &veth, "master", bridge])?;
        ip(&["link", "set", &veth, "up"])?;
        let addr = format!("{}/24", self.members[i].addr);
        ip(&["-n", &netns, "addr", "add", &addr, "dev", &peer])?;
        ip(&["-n", &netns, "link", "set", &peer, "up"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// Server `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        self.members[i].addr
    }

    /// A command that runs `program` in server `i`'s namespace. `ip netns
    /// exec` execs it, so the child's process id is the program's.
    pub fn command(&self, i: usize, program: &std::path::Path) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.members[i].netns])
            .arg(program);
        command
    }

    /// Cuts server `i` off: its veth on the bridge goes down.
    pub fn cut(&self, i: usize) -> anyhow::Result<()> {
        ip(&["link", "set", &self.members[i].veth, "down"]).map(drop)
    }

    /// Joins server `i` again after [`cut`](Self::cut).
    pub fn heal(&self, i: usize) -> anyhow::Result<()> {
        ip(&["link", "set", &self.members[i].veth, "up"]).map(drop)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // The processes inside were killed before (the cluster's own drop).
        for member in &self.members {
            let _ = ip(&["link", "del", &member.veth]);
            if let Err(e) = ip(&["netns", "del", &member.netns]) {
                eprintln!(
                    "NATS cluster: could not remove namespace {}: {e:#}",
                    member.netns
                );
            }
        }
        if let Some(bridge) = &self.bridge {
            if let Err(e) = ip(&["link", "del", bridge]) {
                eprintln!("NATS cluster: could not remove bridge {bridge}: {e:#}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_private_and_differ_by_process_and_network() {
        let first = subnet_candidate(4_194_303, 0, 0);
        assert_eq!(first[0], 10);
        assert!((200..240).contains(&first[1]), "{first:?}");
        assert_ne!(first, subnet_candidate(4_194_303, 1, 0));
        assert_ne!(first, subnet_candidate(4_194_302, 0, 0));
        assert_ne!(first, subnet_candidate(4_194_303, 0, 1));
    }

    #[test]
    fn interface_names_fit_in_fifteen_bytes() {
        // The longest tag: the largest process id Linux gives and a
        // two-digit counter; `slv` + tag + the server index.
        let tag = format!("{:x}{:x}", 4_194_304u32, 0xffu32);
        assert!(format!("slv{tag}9").len() <= 15);
        assert!(format!("slb{tag}").len() <= 15);
    }
}
