//! The configuration file of one nats-server of a [`NatsCluster`]: its
//! name and addresses, its JetStream store, and its routes to the others.
//!
//! [`NatsCluster`]: super::NatsCluster

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// The `cluster { name }` of every test cluster.
const CLUSTER_NAME: &str = "sluice-test";

/// Where one server listens: its address and its client, cluster (route)
/// and monitoring ports.
#[derive(Debug, Clone, Copy)]
pub(super) struct Listen {
    pub host: IpAddr,
    pub client: u16,
    pub cluster: u16,
    pub http: u16,
}

impl Listen {
    /// The address the other servers route to.
    pub fn route(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.cluster)
    }
}

/// The configuration file of server `name` listening on `listen`, routing
/// to `routes`, storing in `store_dir`, fsyncing every write before it is
/// acknowledged when `sync_always`.
pub(super) fn config_text(
    name: &str,
    listen: Listen,
    routes: &[SocketAddr],
    store_dir: &Path,
    sync_always: bool,
) -> String {
    let sync = if sync_always {
        "  sync_interval: always\n"
    } else {
        ""
    };
    let routes: String = routes
        .iter()
        .map(|route| format!("    nats-route://{route}\n"))
        .collect();
    let Listen {
        host,
        client,
        cluster,
        http,
    } = listen;
    format!(
        "server_name: {name}\nlisten: {host}:{client}\nhttp: {host}:{http}\n\
         jetstream {{\n  store_dir: {store:?}\n{sync}}}\n\
         cluster {{\n  name: {CLUSTER_NAME}\n  listen: {host}:{cluster}\n  routes: [\n{routes}  ]\n}}\n",
        store = store_dir.display().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn on(host: [u8; 4], cluster: u16) -> SocketAddr {
        SocketAddr::from((host, cluster))
    }

    #[test]
    fn config_names_the_other_servers_as_routes() {
        let listen = Listen {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            client: 4222,
            cluster: 6222,
            http: 8222,
        };
        let routes = [on([127, 0, 0, 1], 6221), on([127, 0, 0, 1], 6223)];
        let text = config_text("n2", listen, &routes, Path::new("/tmp/x/n2"), true);
        assert!(text.contains("server_name: n2\n"));
        assert!(text.contains("listen: 127.0.0.1:4222\n"));
        assert!(text.contains("http: 127.0.0.1:8222\n"));
        assert!(text.contains("store_dir: \"/tmp/x/n2\"\n"));
        assert!(text.contains("sync_interval: always"));
        assert!(text.contains("nats-route://127.0.0.1:6221\n"));
        assert!(text.contains("nats-route://127.0.0.1:6223\n"));
        assert!(!text.contains("nats-route://127.0.0.1:6222"));
        let relaxed = config_text("n1", listen, &[], Path::new("/s"), false);
        assert!(!relaxed.contains("sync_interval"));
    }

    #[test]
    fn a_server_in_a_namespace_listens_and_routes_on_its_own_address() {
        let listen = Listen {
            host: IpAddr::V4(Ipv4Addr::new(10, 201, 3, 2)),
            client: 4222,
            cluster: 6222,
            http: 8222,
        };
        let routes = [on([10, 201, 3, 3], 6222), on([10, 201, 3, 4], 6222)];
        let text = config_text("n1", listen, &routes, Path::new("/s"), true);
        assert!(text.contains("listen: 10.201.3.2:4222\n"));
        assert!(text.contains("http: 10.201.3.2:8222\n"));
        assert!(text.contains("  listen: 10.201.3.2:6222\n"));
        assert!(text.contains("nats-route://10.201.3.3:6222\n"));
        assert!(text.contains("nats-route://10.201.3.4:6222\n"));
        assert_eq!(listen.route(), on([10, 201, 3, 2], 6222));
    }
}
