//! Separate network hosts on one machine: each "host" is a network namespace that the test
//! makes, joined by a veth pair to a bridge in a namespace of its own, with an address of a
//! private /24 that exists only inside those namespaces. The root namespace has no route to it
//! and the test sends it nothing: every process that talks on it runs inside a host
//! (`ip netns exec`), and host names resolve through each namespace's own hosts file
//! (`/etc/netns/NS/hosts`, which `ip netns exec` mounts over `/etc/hosts`).
//!
//! Faults are packet filters inside a host's namespace (iptables): a partition drops everything
//! on the host's link both ways while its processes keep running; a lossy link drops a random
//! share of the packets (the `statistic` match: this kernel has no netem qdisc).
//!
//! Everything made here is removed when the [`Lab`] is dropped, also when a test panics; labs
//! left by a test binary that was killed are removed by the next one (their names carry the pid).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The private network inside every lab (labs are separate namespaces: they may share it).
const SUBNET: &str = "10.77.0";
const PREFIX: &str = "salnet";

/// One host of a lab.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its name on the lab's network (in every host's hosts file).
    pub name: String,
    /// Its network namespace.
    pub ns: String,
    /// Its address on the lab's /24.
    pub addr: String,
}

/// A set of hosts on one private network; see the module documentation.
pub struct Lab {
    bridge: String,
    hosts: Vec<Host>,
}

/// Runs a command that must succeed; its stderr on failure.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn has(program: &str) -> bool {
    Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

fn hosts_dir(ns: &str) -> PathBuf {
    PathBuf::from("/etc/netns").join(ns)
}

/// Removes the namespaces of labs whose test process is gone.
fn remove_stale() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(ns) = line.split_whitespace().next() else { continue };
        let Some(rest) = ns.strip_prefix(PREFIX).and_then(|r| r.strip_prefix('-')) else { continue };
        let Some(pid) = rest.split('-').next() else { continue };
        if !PathBuf::from("/proc").join(pid).exists() {
            let _ = run("ip", &["netns", "del", ns]);
            let _ = std::fs::remove_dir_all(hosts_dir(ns));
        }
    }
}

impl Lab {
    /// Makes one host per name (the first gets .1, the next .2, ...), or says why it cannot:
    /// not root, no `ip` or `iptables`, or namespaces refused.
    pub fn new(names: &[&str]) -> Result<Lab, String> {
        if !is_root() {
            return Err("needs root (network namespaces, packet filters)".into());
        }
        for program in ["ip", "iptables"] {
            if !has(program) {
                return Err(format!("no `{program}` (apt-get install iproute2 iptables)"));
            }
        }
        remove_stale();
        static LABS: AtomicUsize = AtomicUsize::new(0);
        let tag = format!("{PREFIX}-{}-{}", std::process::id(), LABS.fetch_add(1, Ordering::SeqCst));
        // From here on, whatever exists is removed by drop, also when a step below fails.
        let mut lab = Lab { bridge: format!("{tag}-br"), hosts: Vec::new() };
        run("ip", &["netns", "add", &lab.bridge]).map_err(|e| format!("network namespaces refused: {e}"))?;
        lab.ip(&lab.bridge.clone(), &["link", "add", "br0", "type", "bridge"])?;
        lab.ip(&lab.bridge.clone(), &["link", "set", "br0", "up"])?;
        for (i, name) in names.iter().enumerate() {
            let host = Host {
                name: name.to_string(),
                ns: format!("{tag}-h{i}"),
                addr: format!("{SUBNET}.{}", i + 1),
            };
            run("ip", &["netns", "add", &host.ns])?;
            lab.hosts.push(host.clone());
            let port = format!("p{i}");
            let bridge = lab.bridge.clone();
            // Both ends are made inside namespaces: nothing appears in the root namespace.
            lab.ip(
                &bridge,
                &["link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &host.ns],
            )?;
            lab.ip(&bridge, &["link", "set", &port, "master", "br0", "up"])?;
            lab.ip(&host.ns, &["addr", "add", &format!("{}/24", host.addr), "dev", "eth0"])?;
            lab.ip(&host.ns, &["link", "set", "eth0", "up"])?;
            lab.ip(&host.ns, &["link", "set", "lo", "up"])?;
        }
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for host in &lab.hosts {
            hosts.push_str(&format!("{} {}\n", host.addr, host.name));
        }
        for host in &lab.hosts {
            let dir = hosts_dir(&host.ns);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            std::fs::write(dir.join("hosts"), &hosts).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Ok(lab)
    }

    fn ip(&self, ns: &str, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts.iter().find(|h| h.name == name).unwrap_or_else(|| panic!("no host {name} in the lab"))
    }

    /// `program` to be run on `host` (inside its namespace, with its hosts file).
    pub fn command(&self, host: &str, program: impl Into<PathBuf>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.host(host).ns]).arg(program.into());
        command
    }

    /// Makes `name` resolve to `addr` on `host` only (its hosts file, read by processes started
    /// on it from now on).
    pub fn resolve_on(&self, host: &str, name: &str, addr: &str) {
        let mut hosts = format!("127.0.0.1 localhost\n{addr} {name}\n");
        for other in self.hosts.iter().filter(|h| h.name != name) {
            hosts.push_str(&format!("{} {}\n", other.addr, other.name));
        }
        let path = hosts_dir(&self.host(host).ns).join("hosts");
        std::fs::write(&path, hosts).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// Runs iptables inside `host`'s namespace.
    fn iptables(&self, host: &str, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.host(host).ns, "iptables", "-w"];
        all.extend_from_slice(args);
        run("ip", &all).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Cuts `host` off the network: every packet on its link is dropped, both ways; its
    /// processes keep running and its loopback keeps working.
    pub fn partition(&self, host: &str) {
        self.iptables(host, &["-I", "INPUT", "-i", "eth0", "-j", "DROP"]);
        self.iptables(host, &["-I", "OUTPUT", "-o", "eth0", "-j", "DROP"]);
    }

    /// Drops a random `percent` of the packets on `host`'s link, both ways.
    pub fn lossy(&self, host: &str, percent: u32) {
        let probability = format!("{:.4}", f64::from(percent) / 100.0);
        for (chain, dir) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
            self.iptables(
                host,
                &[
                    "-I",
                    chain,
                    dir,
                    "eth0",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &probability,
                    "-j",
                    "DROP",
                ],
            );
        }
    }

    /// Removes every fault of `host`.
    pub fn heal(&self, host: &str) {
        self.iptables(host, &["-F", "INPUT"]);
        self.iptables(host, &["-F", "OUTPUT"]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace ends its links; processes still inside keep it alive until they
        // exit (tests drop their processes first).
        for host in &self.hosts {
            let _ = run("ip", &["netns", "del", &host.ns]);
            let _ = std::fs::remove_dir_all(hosts_dir(&host.ns));
        }
        let _ = run("ip", &["netns", "del", &self.bridge]);
    }
}
