//! Run the test control plane until stopped (the README demo uses it):
//!
//!   cargo run -p sei-testkit --example control_plane -- KUBECONFIG_OUT
//!
//! Writes the admin kubeconfig to KUBECONFIG_OUT, prints `ready`, and serves until its standard
//! input closes or it is killed; etcd, kube-apiserver and kube-controller-manager die with it.

use std::io::Read;

fn main() -> anyhow::Result<()> {
    let out = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: control_plane KUBECONFIG_OUT"))?;
    let cluster = sei_testkit::TestCluster::start()?;
    std::fs::copy(cluster.kubeconfig_path(), &out)?;
    println!("ready {} (kubeconfig {out})", cluster.api_url());
    // Block until stdin closes (the demo script holds it open).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(cluster);
    Ok(())
}
