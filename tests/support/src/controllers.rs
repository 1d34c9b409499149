//! Controller replicas as separate processes: the `sei-operator` binary run as the chart's
//! ServiceAccount (a kubeconfig with a TokenRequest token) against the test control plane, with
//! leader election in the chart's namespace, for fail-over tests and the fail-over benchmark.
//!
//! A [`ControllerProcess`] never outlives the test process (`process`), keeps its log in the
//! cluster's directory, and can be signalled (SIGKILL, SIGTERM) and waited on.

use crate::identity::{CONTROLLER_NAMESPACE, LEASE_NAME};
use crate::process::{ChildProcess, free_port};
use crate::{TestCluster, TestClusterError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Lease timing of a replica: `(lease duration, renew deadline, retry period)` in seconds.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    pub duration: u64,
    pub renew_deadline: u64,
    pub retry_period: u64,
}

impl LeaseTiming {
    /// The chart's defaults.
    pub const CHART: LeaseTiming = LeaseTiming { duration: 15, renew_deadline: 10, retry_period: 2 };
    /// Short, for tests that wait for an expiry.
    pub const FAST: LeaseTiming = LeaseTiming { duration: 4, renew_deadline: 3, retry_period: 1 };
}

/// What to start: `exe run` as replica `id` with `kubeconfig`, leader election on the chart's
/// Lease with `timing` (none: no leader election), sidecars at `sidecar_template`, watching only
/// `namespace`, plus `extra` arguments and `env` variables.
#[derive(Debug, Clone, Copy)]
pub struct Replica<'a> {
    pub exe: &'a Path,
    pub id: &'a str,
    pub kubeconfig: &'a Path,
    pub timing: Option<LeaseTiming>,
    pub sidecar_template: &'a str,
    pub namespace: &'a str,
    pub extra: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
}

/// One controller replica process.
#[derive(Debug)]
pub struct ControllerProcess {
    pub id: String,
    child: ChildProcess,
    pub metrics_addr: String,
}

impl ControllerProcess {
    /// Start `replica`.
    pub fn start(cluster: &TestCluster, replica: &Replica<'_>) -> Result<Self, TestClusterError> {
        let Replica { exe, id, kubeconfig, timing, sidecar_template, namespace, extra, env: more_env } = *replica;
        let metrics_addr = format!("127.0.0.1:{}", free_port()?);
        let mut args: Vec<String> = vec![
            "run".into(),
            format!("--metrics-addr={metrics_addr}"),
            format!("--namespace={namespace}"),
            format!("--sidecar-url-template={sidecar_template}"),
            "--task-modules=false".into(),
        ];
        if let Some(timing) = timing {
            args.extend([
                "--leader-election".into(),
                format!("--leader-election-lease-name={LEASE_NAME}"),
                format!("--leader-election-lease-duration-seconds={}", timing.duration),
                format!("--leader-election-renew-deadline-seconds={}", timing.renew_deadline),
                format!("--leader-election-retry-period-seconds={}", timing.retry_period),
            ]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let env: Vec<(String, String)> = [
            ("KUBECONFIG", kubeconfig.display().to_string()),
            ("POD_NAME", id.to_string()),
            ("POD_NAMESPACE", CONTROLLER_NAMESPACE.to_string()),
            ("SEI_SNAPSHOT_BUCKET", "local-snapshots".to_string()),
            ("SEI_GENESIS_BUCKET", "local-genesis".to_string()),
            ("SEI_LOG", "info".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(more_env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
        let log = unique(cluster.dir.join(format!("controller-{id}.log")));
        let child = ChildProcess::spawn_with_env(&format!("sei-operator {id}"), exe, &args, &env, &log)?;
        Ok(ControllerProcess { id: id.to_string(), child, metrics_addr })
    }

    /// The process id (for its CPU and memory in /proc).
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.child.log).unwrap_or_default()
    }

    pub fn logged(&self, needle: &str) -> bool {
        self.log().contains(needle)
    }

    /// Wait until the log contains `needle`; the instant it was seen (polled every 5 ms, so the
    /// instant is at most that late). Fails early if the process exits.
    pub async fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<Instant, TestClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.logged(needle) {
                return Ok(Instant::now());
            }
            if let Some(status) = self.child.exited() {
                return Err(TestClusterError::Exited {
                    process: self.child.name.clone(),
                    status: status.to_string(),
                    log: self.child.log_tail(30),
                });
            }
            if Instant::now() >= deadline {
                return Err(TestClusterError::NotReady {
                    what: format!("{needle:?} in the log of {}", self.id),
                    timeout,
                    process: self.child.name.clone(),
                    log: self.child.log_tail(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn signal(&self, signal: libc::c_int) {
        self.child.signal(signal);
    }

    /// Wait for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus, TestClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.exited() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(TestClusterError::Timeout { what: format!("{} to exit", self.id), timeout });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.child.log_tail(lines)
    }
}

pub(crate) fn unique(path: PathBuf) -> PathBuf {
    let mut candidate = path.clone();
    let mut n = 1;
    while candidate.exists() {
        candidate = path.with_extension(format!("{n}.log"));
        n += 1;
    }
    candidate
}
