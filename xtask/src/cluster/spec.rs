//! What a local cluster is made of and the files that say it: the ports
//! of each nats-server and sluice node, each server's `nats.conf` and each
//! node's `sluice.toml` (`examples/sluice.toml` with its own addresses,
//! certificate and a `[cluster]` table).

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::root;

/// The `cluster { name }` of the NATS servers.
const NATS_CLUSTER_NAME: &str = "sluice-local";

/// Where one nats-server listens.
#[derive(Debug, Clone, Copy)]
pub(super) struct NatsPorts {
    pub client: u16,
    pub route: u16,
    pub http: u16,
}

/// Where one sluice node listens.
#[derive(Debug, Clone, Copy)]
pub(super) struct NodePorts {
    pub quic: u16,
    pub admin: u16,
}

/// What a [`super::LocalCluster`] is made of and where it keeps its files.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Stores, configs, logs and certificates.
    pub dir: PathBuf,
    pub(super) nats: Vec<NatsPorts>,
    pub(super) nodes: Vec<NodePorts>,
    /// `jetstream { sync_interval: always }` on every server, and nodes that
    /// require it; otherwise nats-server's default and `require_fsync = false`.
    pub sync_always: bool,
    /// The nodes run `examples/sluice.toml`'s plugins and pipeline.
    pub pipeline: bool,
}

impl ClusterSpec {
    /// `cargo xtask cluster`'s: three servers (client ports 4222-4224,
    /// routes 6222-6224, monitoring 8222-8224) and two nodes (QUIC 4433 and
    /// 4434, admin 9464 and 9465) in `sluice-cluster/`.
    pub fn local() -> ClusterSpec {
        ClusterSpec {
            dir: root().join("sluice-cluster"),
            nats: (0..3)
                .map(|i| NatsPorts {
                    client: 4222 + i,
                    route: 6222 + i,
                    http: 8222 + i,
                })
                .collect(),
            nodes: (0..2)
                .map(|i| NodePorts {
                    quic: 4433 + i,
                    admin: 9464 + i,
                })
                .collect(),
            sync_always: true,
            pipeline: true,
        }
    }

    /// `servers` servers (one is a lone server, no cluster) and `nodes`
    /// nodes on free loopback ports, files in `dir`.
    pub fn on_free_ports(dir: PathBuf, servers: usize, nodes: usize) -> anyhow::Result<Self> {
        // Held together so no two are the same; released when returned.
        let tcp: Vec<TcpListener> = (0..3 * servers + nodes)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()
            .context("failed to pick free TCP ports")?;
        let udp: Vec<UdpSocket> = (0..nodes)
            .map(|_| UdpSocket::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()
            .context("failed to pick free UDP ports")?;
        let tcp: Vec<u16> = tcp
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<Result<_, _>>()?;
        let udp: Vec<u16> = udp
            .iter()
            .map(|s| s.local_addr().map(|a| a.port()))
            .collect::<Result<_, _>>()?;
        Ok(ClusterSpec {
            dir,
            nats: (0..servers)
                .map(|i| NatsPorts {
                    client: tcp[3 * i],
                    route: tcp[3 * i + 1],
                    http: tcp[3 * i + 2],
                })
                .collect(),
            nodes: (0..nodes)
                .map(|i| NodePorts {
                    quic: udp[i],
                    admin: tcp[3 * servers + i],
                })
                .collect(),
            sync_always: true,
            pipeline: false,
        })
    }

    pub(super) fn tls_dir(&self) -> PathBuf {
        self.dir.join("tls")
    }

    /// The CA every node's certificate comes from (what clients trust).
    pub fn ca_path(&self) -> PathBuf {
        self.tls_dir().join("ca.pem")
    }

    /// The client URLs of the servers, `nats://127.0.0.1:PORT`.
    pub fn nats_urls(&self) -> Vec<String> {
        let urls = self
            .nats
            .iter()
            .map(|p| format!("nats://127.0.0.1:{}", p.client));
        urls.collect()
    }

    pub(super) fn monitor_urls(&self) -> Vec<String> {
        let urls = self
            .nats
            .iter()
            .map(|p| format!("http://127.0.0.1:{}", p.http));
        urls.collect()
    }

    /// The nodes' QUIC addresses, `127.0.0.1:PORT`.
    pub fn node_addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|p| format!("127.0.0.1:{}", p.quic))
            .collect()
    }

    /// Fails, naming the port, when something already listens where the
    /// cluster would (another `cargo xtask cluster`, `cargo xtask run`).
    pub(super) fn check_ports_free(&self) -> anyhow::Result<()> {
        let tcp = self.nats.iter().flat_map(|p| [p.client, p.route, p.http]);
        for port in tcp.chain(self.nodes.iter().map(|p| p.admin)) {
            TcpListener::bind(("127.0.0.1", port)).with_context(|| {
                format!("TCP port {port} on 127.0.0.1 is taken: is a cluster (or `cargo xtask run`) already running?")
            })?;
        }
        for port in self.nodes.iter().map(|p| p.quic) {
            UdpSocket::bind(("127.0.0.1", port)).with_context(|| {
                format!("UDP port {port} on 127.0.0.1 is taken: is a cluster (or `cargo xtask run`) already running?")
            })?;
        }
        Ok(())
    }
}

/// The configuration file of nats-server `i` of `spec`: JetStream with its
/// store in `store_dir`, and routes to every other server.
pub(super) fn nats_config(spec: &ClusterSpec, i: usize, store_dir: &Path) -> String {
    let ports = spec.nats[i];
    let sync = if spec.sync_always {
        "  sync_interval: always\n"
    } else {
        ""
    };
    let mut text = format!(
        "server_name: nats-{n}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{http}\n\
         jetstream {{\n  store_dir: {store:?}\n{sync}}}\n",
        n = i + 1,
        client = ports.client,
        http = ports.http,
        store = store_dir.display().to_string(),
    );
    if spec.nats.len() > 1 {
        let routes: String = (spec.nats.iter().enumerate())
            .filter(|&(j, _)| j != i)
            .map(|(_, p)| format!("    nats-route://127.0.0.1:{}\n", p.route))
            .collect();
        text.push_str(&format!(
            "cluster {{\n  name: {NATS_CLUSTER_NAME}\n  listen: 127.0.0.1:{}\n  routes: [\n{routes}  ]\n}}\n",
            ports.route
        ));
    }
    text
}

/// `file` (relative to `dir`, or absolute) as an absolute path without
/// `..` steps, for a config that is not in `dir`.
fn beside(dir: &Path, file: &str) -> PathBuf {
    let mut path = PathBuf::new();
    for part in dir.join(file).components() {
        match part {
            std::path::Component::ParentDir => {
                path.pop();
            }
            other => path.push(other),
        }
    }
    path
}

/// Node `i`'s `sluice.toml`: `examples/sluice.toml` (`example`, read from
/// `examples_dir`) with its own listen addresses, data directory and
/// certificate, plugin paths made absolute, and a `[cluster]` table; with
/// `spec.pipeline` off, without plugins and pipelines.
pub(super) fn node_config(
    spec: &ClusterSpec,
    i: usize,
    example: &str,
    examples_dir: &Path,
) -> anyhow::Result<String> {
    let mut config: toml::Table = example
        .parse()
        .context("examples/sluice.toml is not valid TOML")?;
    let name = format!("node-{}", i + 1);
    let tls = spec.tls_dir();
    let path = |p: PathBuf| toml::Value::String(p.display().to_string());
    let section = |config: &mut toml::Table, key: &str| -> anyhow::Result<toml::Table> {
        match config.remove(key) {
            None => Ok(toml::Table::new()),
            Some(toml::Value::Table(t)) => Ok(t),
            Some(_) => bail!("examples/sluice.toml: [{key}] is not a table"),
        }
    };
    let mut server = section(&mut config, "server")?;
    server.insert(
        "listen".into(),
        format!("127.0.0.1:{}", spec.nodes[i].quic).into(),
    );
    server.insert("data_dir".into(), path(spec.dir.join(&name)));
    server.insert("cert".into(), path(tls.join(format!("{name}.pem"))));
    server.insert("key".into(), path(tls.join(format!("{name}-key.pem"))));
    config.insert("server".into(), server.into());
    let mut admin = section(&mut config, "admin")?;
    admin.insert(
        "listen".into(),
        format!("127.0.0.1:{}", spec.nodes[i].admin).into(),
    );
    config.insert("admin".into(), admin.into());
    if spec.pipeline {
        // Plugin paths are relative to the config file; this one is not
        // beside the example.
        let plugins = config.get_mut("plugin").and_then(|p| p.as_array_mut());
        for plugin in plugins
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_table_mut())
        {
            if let Some(file) = plugin.get("path").and_then(|p| p.as_str()) {
                plugin.insert("path".into(), path(beside(examples_dir, file)));
            }
        }
    } else {
        config.remove("plugin");
        config.remove("pipeline");
        // Nothing to reload; a benchmark does not need the watcher.
        let mut runtime = section(&mut config, "plugins")?;
        runtime.insert("watch".into(), false.into());
        config.insert("plugins".into(), runtime.into());
    }
    let mut cluster = toml::Table::new();
    cluster.insert("nats".into(), spec.nats_urls().into());
    cluster.insert("replicas".into(), (spec.nats.len().min(3) as i64).into());
    cluster.insert("node".into(), name.into());
    cluster.insert("monitor".into(), spec.monitor_urls().into());
    cluster.insert("require_fsync".into(), spec.sync_always.into());
    config.insert("cluster".into(), cluster.into());
    let body = toml::to_string(&config).context("failed to write a node config")?;
    Ok(format!(
        "# Written by `cargo xtask` from examples/sluice.toml at every start of the\n\
         # cluster (edit that file); see that file for what each setting means.\n\n{body}"
    ))
}

/// Makes the cluster's CA and a certificate per node for `127.0.0.1` and
/// `localhost` in `dir` (`ca.pem`, `ca-key.pem`, `node-N.pem`,
/// `node-N-key.pem`), keeping what is there: a second run reuses them, so
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_server_routes_to_the_others() {
        let spec = ClusterSpec::local();
        let text = nats_config(&spec, 1, Path::new("/c/nats-2"));
        assert!(text.contains("server_name: nats-2\n"), "{text}");
        assert!(text.contains("listen: 127.0.0.1:4223\n"), "{text}");
        assert!(text.contains("http: 127.0.0.1:8223\n"), "{text}");
        assert!(
            text.contains("store_dir: \"/c/nats-2\"\n  sync_interval: always\n"),
            "{text}"
        );
        assert!(text.contains("listen: 127.0.0.1:6223\n"), "{text}");
        assert!(text.contains("nats-route://127.0.0.1:6222\n"), "{text}");
        assert!(text.contains("nats-route://127.0.0.1:6224\n"), "{text}");
        assert!(!text.contains("nats-route://127.0.0.1:6223"), "{text}");
        let lone = ClusterSpec {
            sync_always: false,
            nats: vec![spec.nats[0]],
            ..spec
        };
        let text = nats_config(&lone, 0, Path::new("/c/nats-1"));
        assert!(
            !text.contains("cluster") && !text.contains("sync_interval"),
            "{text}"
        );
    }

    #[test]
    fn a_node_config_is_the_example_with_its_own_addresses_and_the_cluster() {
        let example = std::fs::read_to_string(root().join("examples/sluice.toml")).unwrap();
        let spec = ClusterSpec {
            dir: PathBuf::from("/c"),
            ..ClusterSpec::local()
        };
        let text = node_config(&spec, 1, &example, Path::new("/repo/examples")).unwrap();
        let config: toml::Table = text.parse().unwrap();
        assert_eq!(config["server"]["listen"].as_str(), Some("127.0.0.1:4434"));
        assert_eq!(config["server"]["data_dir"].as_str(), Some("/c/node-2"));
        assert_eq!(config["server"]["cert"].as_str(), Some("/c/tls/node-2.pem"));
        assert_eq!(
            config["server"]["key"].as_str(),
            Some("/c/tls/node-2-key.pem")
        );
        assert_eq!(config["admin"]["listen"].as_str(), Some("127.0.0.1:9465"));
        assert_eq!(config["storage"]["fsync"].as_str(), Some("always"));
        let cluster = &config["cluster"];
        assert_eq!(cluster["replicas"].as_integer(), Some(3));
        assert_eq!(cluster["node"].as_str(), Some("node-2"));
        assert_eq!(cluster["require_fsync"].as_bool(), Some(true));
        assert_eq!(cluster["nats"].as_array().map(Vec::len), Some(3));
        assert_eq!(
            cluster["monitor"][2].as_str(),
            Some("http://127.0.0.1:8224")
        );
        let plugin = &config["plugin"][0];
        assert!(plugin["path"]
            .as_str()
            .unwrap()
            .starts_with("/repo/plugins/dist/"));
        assert!(config["pipeline"].as_array().is_some_and(|p| !p.is_empty()));

        let bare = ClusterSpec {
            pipeline: false,
            sync_always: false,
            ..spec
        };
        let config: toml::Table = node_config(&bare, 0, &example, Path::new("/e"))
            .unwrap()
            .parse()
            .unwrap();
        assert!(!config.contains_key("plugin") && !config.contains_key("pipeline"));
        assert_eq!(config["plugins"]["watch"].as_bool(), Some(false));
        assert_eq!(config["cluster"]["require_fsync"].as_bool(), Some(false));
    }
}
