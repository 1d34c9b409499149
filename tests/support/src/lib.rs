//! `sei-testkit`: a real Kubernetes control plane for the integration tests.
//!
//! [`TestCluster`] runs etcd, kube-apiserver (TLS with a CA generated at start, client-cert
//! admin in `system:masters`, `--authorization-mode=Node,RBAC`, service-account signing keys)
//! and kube-controller-manager (only the garbage-collector and namespace controllers) on free
//! loopback ports, built from the Go modules in `tests/control-plane/` by its `build.sh`.
//!
//! - [`TestCluster::shared`] starts one control plane per test binary on first use;
//! - [`TestCluster::client`] gives each test a `kube::Client` on the test's own runtime (a
//!   kube client is bound to the runtime that created it);
//! - [`TestCluster::namespace`] gives each test its own namespace, deleted when dropped;
//! - [`TestCluster::install_crds`] applies CRDs and waits until they are Established;
//! - [`TestCluster::statefulsets`] is the StatefulSet status faker (pause/resume per namespace);
//! - [`TestCluster::controller_client`] is a client authenticated as the Helm chart's
//!   ServiceAccount, under the chart's RBAC (`identity`): what controllers under test use;
//! - [`TestCluster::audit_events`] reads the API server's audit log (every request at level
//!   `Metadata`: verb, resource, namespace, name, user, user agent, response code), for tests
//!   that count what reached the API server and for the next mystery (who deleted what).
//!
//! Processes never outlive the test process (see [`process`]). Self-tests: `tests/harness.rs`.

pub mod controllers;
pub mod identity;
pub mod pki;
pub mod process;
pub mod statefulsets;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use process::{ChildProcess, free_port};
use statefulsets::StatefulSetFaker;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the control plane may take to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum TestClusterError {
    #[error("building or locating the control-plane binaries ({script}): {message}")]
    Binaries { script: String, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Pki(#[from] pki::PkiError),
    #[error("{process} exited during start-up ({status}); last log lines:\n{log}")]
    Exited { process: String, status: String, log: String },
    #[error("{what} not ready after {timeout:?}; last log lines of {process}:\n{log}")]
    NotReady { what: String, timeout: Duration, process: String, log: String },
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout { what: String, timeout: Duration },
    #[error("helm {args} failed:\n{stderr}")]
    Helm { args: String, stderr: String },
    #[error("manifest: {0}")]
    Manifest(String),
}

/// The repository this test runs from. Found at run time from the package under test (cargo sets
/// `CARGO_MANIFEST_DIR` for every test process), not from where this crate was compiled: a build
/// reused from a clone at another path would point at that clone.
pub fn repo_root() -> PathBuf {
    let marker = |d: &Path| d.join("tests/control-plane/build.sh").is_file();
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .and_then(|dir| dir.ancestors().find(|d| marker(d)).map(Path::to_path_buf))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// Locate (building if needed) the control-plane binaries: `SEI_K8S_BIN_DIR` if set, else the
/// directory `tests/control-plane/build.sh` prints (a no-op when cached).
pub fn control_plane_bin_dir() -> Result<PathBuf, TestClusterError> {
    if let Some(dir) = std::env::var_os("SEI_K8S_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let script = repo_root().join("tests/control-plane/build.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| TestClusterError::Binaries { script: script.display().to_string(), message: e.to_string() })?;
    if !out.status.success() {
        return Err(TestClusterError::Binaries { script: script.display().to_string(), message: format!("exited with {}", out.status) });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout.lines().last().unwrap_or_default().trim().to_string();
    Ok(PathBuf::from(dir))
}

/// The Gateway API's HTTPRoute CRD (standard channel), for `TestCluster::third_party_crd`.
pub const HTTPROUTES_CRD: &str = "gateway.networking.k8s.io_httproutes.yaml";
/// The Prometheus Operator's ServiceMonitor CRD, for `TestCluster::third_party_crd`.
pub const SERVICEMONITORS_CRD: &str = "monitoring.coreos.com_servicemonitors.yaml";

/// Every request, once, at level Metadata (no bodies), after the response was sent.
const AUDIT_POLICY: &str =
    "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived, ResponseStarted, Panic]\nrules:\n- level: Metadata\n";

/// One request as the API server's audit log records it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditEvent {
    pub verb: String,
    /// The API group (`""` for the core group).
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub user: String,
    pub user_agent: String,
    pub code: i64,
    /// RFC 3339 with microseconds, when the request was received.
    pub received: String,
    /// The request's path and query.
    pub request_uri: String,
}

impl AuditEvent {
    /// A discovery read (`GET /api…` or `/apis…` with no resource): every authenticated user may
    /// (the built-in `system:discovery` ClusterRole), no chart grants it.
    pub fn is_discovery(&self) -> bool {
        self.resource.is_empty()
            && self.verb == "get"
            && (self.request_uri == "/api" || self.request_uri.starts_with("/api/") || self.request_uri.starts_with("/apis"))
    }
}

impl AuditEvent {
    fn from_json(v: &serde_json::Value) -> Self {
        let s = |p: &str| v.pointer(p).and_then(serde_json::Value::as_str).unwrap_or_default().to_string();
        AuditEvent {
            verb: s("/verb"),
            api_group: s("/objectRef/apiGroup"),
            resource: s("/objectRef/resource"),
            subresource: s("/objectRef/subresource"),
            namespace: s("/objectRef/namespace"),
            name: s("/objectRef/name"),
            user: s("/user/username"),
            user_agent: s("/userAgent"),
            code: v.pointer("/responseStatus/code").and_then(serde_json::Value::as_i64).unwrap_or_default(),
            received: s("/requestReceivedTimestamp"),
            request_uri: s("/requestURI"),
        }
    }
}

/// A running control plane.
pub struct TestCluster {
    dir: PathBuf,
    kubeconfig_path: PathBuf,
    kubeconfig: Kubeconfig,
    bin_dir: PathBuf,
    api_url: String,
    processes: Mutex<Vec<ChildProcess>>,
    faker: StatefulSetFaker,
    runtime: Option<tokio::runtime::Runtime>,
    /// The chart's ServiceAccount and RBAC, installed on first use (`identity`).
    controller_identity: tokio::sync::OnceCell<()>,
    /// Keeps the temp dir of a non-shared cluster until drop.
    _tempdir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster").field("api_url", &self.api_url).field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn kubeconfig_yaml(api_url: &str, pki: &pki::Pki) -> String {
    use std::fmt::Write;
    let b64 = |s: &str| base64_encode(s.as_bytes());
    let mut y = String::new();
    let _ = write!(
        y,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: testkit\n  cluster:\n    server: {api_url}\n    certificate-authority-data: {}\n\
         users:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n\
         contexts:\n- name: testkit\n  context:\n    cluster: testkit\n    user: admin\ncurrent-context: testkit\n",
        b64(&pki.ca_pem),
        b64(&pki.admin_cert_pem),
        b64(&pki.admin_key_pem)
    );
    y
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

/// Remove the directories of earlier test processes that are gone.
fn sweep_stale_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for e in entries.flatten() {
        let pid: Option<i32> = e.file_name().to_str().and_then(|n| n.split('-').next()).and_then(|p| p.parse().ok());
        // SAFETY: kill with signal 0 only checks whether the pid exists.
        if let Some(pid) = pid
            && unsafe { libc::kill(pid, 0) } != 0
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Poll `check` until it returns `Some`, or fail after `timeout`. The way tests wait on a
/// condition (never a bare sleep).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, TestClusterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(TestClusterError::Timeout { what: what.to_string(), timeout });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

static NAMESPACE_COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestCluster {
    /// The control plane shared by every test of this test binary, started on first use.
    /// Panics with the start-up error (the log tail of the process that failed) if it cannot
    /// start: every integration test needs it.
    pub fn shared() -> &'static TestCluster {
        static SHARED: OnceLock<TestCluster> = OnceLock::new();
        SHARED.get_or_init(|| {
            // Started on a thread of its own: the caller may be inside a tokio runtime, and
            // start-up blocks on a runtime of the cluster's own.
            let started = std::thread::Builder::new()
                .name("testkit-start".into())
                .spawn(TestCluster::start)
                .expect("spawning the testkit start thread")
                .join();
            match started {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => panic!("the test control plane did not start: {e}"),
                Err(_) => panic!("the test control plane start-up panicked"),
            }
        })
    }

    /// Start a control plane of its own (blocking; call it outside an async context, or on a
    /// thread of its own). Stopped when dropped.
    pub fn start() -> Result<TestCluster, TestClusterError> {
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once() {
                Ok(c) => return Ok(c),
                // A port clash shows as an early exit; try again with new ports.
                Err(e @ TestClusterError::Exited { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| TestClusterError::Kubeconfig("unreachable".into())))
    }

    fn start_once() -> Result<TestCluster, TestClusterError> {
        let started = Instant::now();
        let bin_dir = control_plane_bin_dir()?;
        let base = std::env::temp_dir().join("sei-testkit");
        std::fs::create_dir_all(&base)?;
        sweep_stale_dirs(&base);
        let tempdir = tempfile::Builder::new().prefix(&format!("{}-", std::process::id())).tempdir_in(&base)?;
        let dir = tempdir.path().to_path_buf();
        let pki = pki::generate(&dir)?;

        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let api_port = free_port()?;
        let kcm_port = free_port()?;
        let api_url = format!("https://127.0.0.1:{api_port}");

        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("testkit-cluster").enable_all().build()?;

        let mut processes = Vec::new();
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let etcd_args: Vec<String> = [
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ]
        .into();
        processes.push(ChildProcess::spawn("etcd", &bin_dir.join("etcd"), &etcd_args, &dir.join("etcd.log"))?);

        let audit_policy = dir.join("audit-policy.yaml");
        std::fs::write(&audit_policy, AUDIT_POLICY)?;
        let audit_log = dir.join("audit.log");
        let api_args: Vec<String> = [
            format!("--audit-policy-file={}", audit_policy.display()),
            format!("--audit-log-path={}", audit_log.display()),
            "--audit-log-format=json".into(),
            "--audit-log-mode=blocking".into(),
            // Never rotated (lumberjack's default is 100 MB, which a scale run passes).
            "--audit-log-maxsize=1000000".into(),
            format!("--etcd-servers={etcd_url}"),
            format!("--secure-port={api_port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--cert-dir={}", dir.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", pki.serving_cert.display()),
            format!("--tls-private-key-file={}", pki.serving_key.display()),
            format!("--client-ca-file={}", pki.ca_cert.display()),
            "--authorization-mode=Node,RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", pki.sa_public_key.display()),
            format!("--service-account-signing-key-file={}", pki.sa_key.display()),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--allow-privileged=true".into(),
            // No service-account controller runs, so nothing would create default accounts.
            "--disable-admission-plugins=ServiceAccount".into(),
            "--endpoint-reconciler-type=none".into(),
            "--enable-priority-and-fairness=false".into(),
            "--v=1".into(),
        ]
        .into();
        processes.push(ChildProcess::spawn("kube-apiserver", &bin_dir.join("kube-apiserver"), &api_args, &dir.join("kube-apiserver.log"))?);

        let kubeconfig_path = dir.join("kubeconfig");
        std::fs::write(&kubeconfig_path, kubeconfig_yaml(&api_url, &pki))?;
        let kubeconfig = Kubeconfig::read_from(&kubeconfig_path).map_err(|e| TestClusterError::Kubeconfig(e.to_string()))?;

        let mut cluster = TestCluster {
            dir: dir.clone(),
            kubeconfig_path: kubeconfig_path.clone(),
            kubeconfig,
            bin_dir: bin_dir.clone(),
            api_url,
            processes: Mutex::new(processes),
            faker: StatefulSetFaker::default(),
            runtime: None,
            controller_identity: tokio::sync::OnceCell::new(),
            _tempdir: None,
        };
        runtime.block_on(cluster.wait_ready(started + START_TIMEOUT))?;

        let kcm_args: Vec<String> = [
            format!("--kubeconfig={}", kubeconfig_path.display()),
            format!("--authentication-kubeconfig={}", kubeconfig_path.display()),
            format!("--authorization-kubeconfig={}", kubeconfig_path.display()),
            "--controllers=garbagecollector,namespace".into(),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={kcm_port}"),
            format!("--cert-dir={}", dir.join("kcm-certs").display()),
            "--concurrent-gc-syncs=5".into(),
            format!("--v={}", std::env::var("SEI_TESTKIT_KCM_VERBOSITY").unwrap_or_else(|_| "1".into())),
        ]
        .into();
        cluster.processes.lock().unwrap_or_else(|p| p.into_inner()).push(ChildProcess::spawn(
            "kube-controller-manager",
            &bin_dir.join("kube-controller-manager"),
            &kcm_args,
            &dir.join("kube-controller-manager.log"),
        )?);

        let client = runtime.block_on(cluster.client());
        runtime.spawn(cluster.faker.clone().run(client));
        cluster.runtime = Some(runtime);
        cluster._tempdir = Some(tempdir);
        eprintln!("sei-testkit: control plane ready at {} in {:?} (dir {})", cluster.api_url, started.elapsed(), dir.display());
        Ok(cluster)
    }

    /// Crash `process` (`etcd` or `kube-apiserver`) with SIGKILL and start it again on the same
    /// data directory, ports and certificates; returns once the API server answers `/readyz`
    /// again, with how long that took. For a cluster of the test's own (`TestCluster::start`):
    /// other tests sharing one would see the outage.
    pub async fn restart(&self, process: &str) -> Result<Duration, TestClusterError> {
        let started = Instant::now();
        let find = |procs: &Vec<ChildProcess>| procs.iter().position(|p| p.name == process);
        {
            let procs = self.processes.lock().unwrap_or_else(|p| p.into_inner());
            let i = find(&procs).ok_or_else(|| TestClusterError::Manifest(format!("no process {process} in this cluster")))?;
            procs[i].signal(libc::SIGKILL);
        }
        let what = format!("{process} to exit after SIGKILL");
        eventually(&what, Duration::from_secs(10), || async {
            let mut procs = self.processes.lock().unwrap_or_else(|p| p.into_inner());
            let i = find(&procs)?;
            procs[i].exited().map(|_| ())
        })
        .await?;
        {
            let mut procs = self.processes.lock().unwrap_or_else(|p| p.into_inner());
            let i = find(&procs).ok_or_else(|| TestClusterError::Manifest(format!("no process {process} in this cluster")))?;
            let log = controllers::unique(self.dir.join(format!("{process}.log")));
            let again = procs[i].respawn(&log)?;
            procs[i] = again;
        }
        self.wait_ready(Instant::now() + START_TIMEOUT).await?;
        Ok(started.elapsed())
    }

    fn check_alive(&self) -> Result<(), TestClusterError> {
        let mut procs = self.processes.lock().unwrap_or_else(|p| p.into_inner());
        for p in procs.iter_mut() {
            if let Some(status) = p.exited() {
                return Err(TestClusterError::Exited { process: p.name.clone(), status: status.to_string(), log: p.log_tail(30) });
            }
        }
        Ok(())
    }

    async fn wait_ready(&self, deadline: Instant) -> Result<(), TestClusterError> {
        let client = self.client().await;
        loop {
            self.check_alive()?;
            let req = http::Request::get("/readyz").body(Vec::new()).map_err(|e| TestClusterError::Kubeconfig(e.to_string()))?;
            if let Ok(body) = client.request_text(req).await
                && body.trim() == "ok"
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let procs = self.processes.lock().unwrap_or_else(|p| p.into_inner());
                let api = procs.iter().find(|p| p.name == "kube-apiserver");
                return Err(TestClusterError::NotReady {
                    what: "kube-apiserver /readyz".into(),
                    timeout: START_TIMEOUT,
                    process: "kube-apiserver".into(),
                    log: api.map(|p| p.log_tail(30)).unwrap_or_default(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new client bound to the calling runtime.
    pub async fn client(&self) -> kube::Client {
        let mut config = kube::Config::from_custom_kubeconfig(self.kubeconfig.clone(), &KubeConfigOptions::default())
            .await
            .expect("the testkit's own kubeconfig is valid");
        config.read_timeout = Some(Duration::from_secs(30));
        // Named in the API server's audit log.
        config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_static("sei-testkit")));
        kube::Client::try_from(config).expect("building a kube client from the testkit kubeconfig")
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// Where the control-plane binaries are (e.g. for `kubectl`).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// A third-party CRD as its project publishes it (`tests/control-plane/crds/go.mod` pins the
    /// versions; `build.sh` copies them from the Go module cache): `HTTPROUTES_CRD`,
    /// `SERVICEMONITORS_CRD`.
    pub fn third_party_crd(&self, file: &str) -> Result<CustomResourceDefinition, TestClusterError> {
        let path = self.bin_dir.join("crds").join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| TestClusterError::Manifest(format!("{}: {e}", path.display())))?;
        serde_yaml::from_str(&text).map_err(|e| TestClusterError::Manifest(format!("{}: {e}", path.display())))
    }

    /// The API server's audit log (JSON lines).
    pub fn audit_log_path(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// Every audited request so far that `keep` accepts (the log is written before each response
    /// is sent: a request whose answer the caller has seen is in it).
    pub fn audit_events(&self, keep: impl Fn(&AuditEvent) -> bool) -> Vec<AuditEvent> {
        // Rotated files first (`audit-<time>.log`, oldest first), then the current one.
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("audit-") && n.ends_with(".log")))
            .collect();
        files.sort();
        files.push(self.audit_log_path());
        let mut out = Vec::new();
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else { continue };
            out.extend(
                text.lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .map(|v| AuditEvent::from_json(&v))
                    .filter(|e| keep(e)),
            );
        }
        out
    }

    /// Process ids of etcd, kube-apiserver and kube-controller-manager.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.processes.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|p| (p.name.clone(), p.pid())).collect()
    }

    pub fn statefulsets(&self) -> &StatefulSetFaker {
        &self.faker
    }

    /// A fresh namespace for one test, deleted when the guard is dropped.
    pub async fn namespace(&'static self, prefix: &str) -> TestNamespace {
        let n = NAMESPACE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix: String = prefix.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect::<String>().to_lowercase();
        let name = format!("{prefix}-{}-{n}", std::process::id());
        let api: Api<Namespace> = Api::all(self.client().await);
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": {"sei-testkit": "true"}}}))
            .expect("namespace object");
        api.create(&PostParams::default(), &ns).await.unwrap_or_else(|e| panic!("creating test namespace {name}: {e}"));
        TestNamespace { name, cluster: self }
    }

    /// Server-side apply CRDs and wait until each is Established.
    pub async fn install_crds(&self, crds: &[CustomResourceDefinition]) -> Result<(), TestClusterError> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client().await);
        for crd in crds {
            let name = crd.metadata.name.clone().unwrap_or_default();
            api.patch(&name, &PatchParams::apply("sei-testkit").force(), &Patch::Apply(crd)).await?;
        }
        for crd in crds {
            let name = crd.metadata.name.clone().unwrap_or_default();
            eventually(&format!("CRD {name} to be Established"), Duration::from_secs(30), || async {
                let c = api.get(&name).await.ok()?;
                let established = c.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(())
            })
            .await?;
        }
        Ok(())
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        // ChildProcess::drop kills each process group.
        self.processes.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// A namespace that belongs to one test; deleted (asynchronously, on the cluster's runtime)
/// when dropped, also when the test panics.
pub struct TestNamespace {
    pub name: String,
    cluster: &'static TestCluster,
}

impl TestNamespace {
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        let cluster = self.cluster;
        if let Some(rt) = &cluster.runtime {
            rt.spawn(async move {
                let api: Api<Namespace> = Api::all(cluster.client().await);
                let _ = api.delete(&name, &DeleteParams::default()).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_events_are_read_from_json_lines() {
        let line = serde_json::json!({
            "kind": "Event", "stage": "ResponseComplete", "verb": "delete",
            "user": {"username": "system:serviceaccount:kube-system:generic-garbage-collector"},
            "userAgent": "kube-controller-manager/v1.36.3",
            "objectRef": {"resource": "jobs", "namespace": "sei", "name": "rpc-bootstrap", "apiGroup": "batch"},
            "responseStatus": {"code": 200},
            "requestReceivedTimestamp": "2026-11-30T00:00:00.000001Z"
        });
        let e = AuditEvent::from_json(&line);
        assert_eq!((e.verb.as_str(), e.resource.as_str(), e.name.as_str(), e.code), ("delete", "jobs", "rpc-bootstrap", 200));
        assert!(e.user.ends_with("generic-garbage-collector") && e.user_agent.starts_with("kube-controller-manager"));
        assert!(AUDIT_POLICY.contains("level: Metadata"));
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }
}
