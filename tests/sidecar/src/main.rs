//! `sei-test-sidecar --port 7777 [--script snapshot-restore=complete:2 ...]`: serve the test
//! sidecar until killed (used by the README demo).

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// `task-type=complete:N`, `task-type=fail:N:message` or `task-type=stall`.
    #[arg(long)]
    script: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sidecar = sei_test_sidecar::TestSidecar::start(args.port).await?;
    for s in &args.script {
        let (t, spec) = s.split_once('=').ok_or_else(|| anyhow::anyhow!("--script {s}: expected task-type=spec"))?;
        sidecar.script(t, sei_test_sidecar::parse_script(spec).map_err(anyhow::Error::msg)?);
    }
    println!("{}", sidecar.url_template());
    std::future::pending::<()>().await;
    Ok(())
}
