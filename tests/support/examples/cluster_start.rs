//! Prints how long a warm `TestCluster` start takes (binaries cached): time until
//! kube-apiserver's /readyz is ok and kube-controller-manager is launched, median of N starts.
//!
//!   cargo run --release -p sei-testkit --example cluster_start -- [N]

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(5);
    sei_testkit::control_plane_bin_dir()?;
    let mut times = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let cluster = sei_testkit::TestCluster::start()?;
        let elapsed = t.elapsed();
        println!("start {}: {:.2} s ({})", i + 1, elapsed.as_secs_f64(), cluster.api_url());
        times.push(elapsed);
        drop(cluster);
    }
    times.sort();
    println!(
        "warm TestCluster start: median {:.2} s, min {:.2} s, max {:.2} s over {n} starts",
        times[n / 2].as_secs_f64(),
        times[0].as_secs_f64(),
        times[n - 1].as_secs_f64()
    );
    Ok(())
}
