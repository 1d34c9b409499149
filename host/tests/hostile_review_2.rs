//! Second hostile review of the group-task changes (WIT 0.1.1 `member-sidecars`, the group
//! scope, one HTTP client shared by every node's sidecar client): guests built to misbehave,
//! run by the real sandbox.
//!
//! - `a_hanging_member_sidecar_stalls_only_its_own_steps`: group steps stuck on a member sidecar
//!   that never answers hold one connection each, do not delay another node's sidecar call made
//!   through the same shared HTTP client, and leave no connection behind when they end;
//! - `a_member_sidecar_answer_costs_the_host_its_bytes_not_a_parsed_tree` and
//!   `a_node_sidecar_answer_costs_the_host_its_bytes_not_a_parsed_tree`: a sidecar answer just
//!   under the 1 MiB body cap must not grow the host by many times its size (this binary counts
//!   every heap byte the host allocates, as `sandbox_bounds.rs` does).
//!
//! The tests run one at a time (`ONE_AT_A_TIME`): the heap counter is global to the binary.

use sei_operator::adapters::kube::InMemoryKube;
use sei_operator::adapters::sidecar::{HttpSidecarClient, MemberSidecars, SidecarClient};
use sei_operator::embedded::test_guest_path;
use sei_operator::policy::guard::{CapabilityName, Grants};
use sei_operator::policy::scope::Scope;
use sei_operator::sandbox::{LoadedModule, ModuleGrant, RunEnv, RunInput, RunReport, Sandbox, SandboxConfig, StepOutcome};
use serde_json::{Value, json};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;

/// Counts live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded to the system allocator with the pointer and layout it gave out.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the caller's arguments.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MIB: usize = 1 << 20;
const GROUP_UID: &str = "g-uid";
const TASK_ID: &str = "7f0c2a4e-0000-5000-8000-000000000001";

/// The heap growth (peak over the start) while `f` runs.
async fn peak_growth<T>(f: impl std::future::Future<Output = T>) -> (T, usize) {
    let start = LIVE.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    let out = f.await;
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(start))
}

struct Fixture {
    sandbox: Sandbox,
    /// The misbehaving guest, granted every capability (the guard decides, not the grant).
    module: LoadedModule,
}

async fn fixture() -> &'static Fixture {
    static FIXTURE: OnceCell<Fixture> = OnceCell::const_new();
    FIXTURE
        .get_or_init(|| async {
            let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
            let caps = [CapabilityName::KubeRead, CapabilityName::KubeWrite, CapabilityName::KubeDelete, CapabilityName::Sidecar];
            let wasm = std::fs::read(test_guest_path("test-misbehaving")).expect("the misbehaving guest is built");
            let module = sandbox.load_module(&wasm, ModuleGrant::new(Grants::new(caps))).await.expect("misbehaving loads");
            Fixture { sandbox, module }
        })
        .await
}

fn input(task_type: &str, params: Value) -> RunInput {
    RunInput {
        task_type: task_type.into(),
        task_id: TASK_ID.into(),
        plan_id: "plan-1".into(),
        node: json!({"apiVersion": "sei.io/v1alpha1", "kind": "SeiNode", "metadata": {"name": "rpc", "namespace": "sei", "uid": "u1"}, "spec": {}})
            .to_string(),
        params: params.to_string(),
        checkpoint: None,
        attempt: 1,
    }
}

/// A group task's environment: group `net`, the members given, each with the sidecar client given.
fn group_env(members: BTreeMap<String, Arc<dyn SidecarClient>>) -> RunEnv {
    let scope = Scope::for_group("sei", "net", GROUP_UID, members.keys().cloned().collect(), BTreeMap::new(), BTreeMap::new());
    RunEnv { scope, kube: Arc::new(InMemoryKube::new()), sidecar: None, members: Some(Arc::new(members) as Arc<dyn MemberSidecars>) }
}

fn node_env(sidecar: Arc<dyn SidecarClient>) -> RunEnv {
    RunEnv { scope: Scope::for_node("sei", "rpc"), kube: Arc::new(InMemoryKube::new()), sidecar: Some(sidecar), members: None }
}

fn completed(r: &RunReport) -> Value {
    match &r.outcome {
        Ok(StepOutcome::Complete { output }) => output.clone(),
        other => panic!("expected a completed step, got {other:?}"),
    }
}

/// Read one request head from `sock` (false: the peer went away first).
async fn read_head(sock: &mut tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// An HTTP server that answers every request with 200 and `body`, and closes.
async fn answering_sidecar(body: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let body = body.clone();
            tokio::spawn(async move {
                if !read_head(&mut sock).await {
                    return;
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

/// What a tarpit has seen: connections open now, and accepted in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Seen {
    open: usize,
    accepted: usize,
}

/// An HTTP server that reads each request and never answers; it notices when the client hangs up.
async fn tarpit() -> (String, tokio::sync::watch::Receiver<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(Seen::default());
    let tx = Arc::new(tx);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            tx.send_modify(|s| {
                s.open += 1;
                s.accepted += 1;
            });
            let tx = tx.clone();
            tokio::spawn(async move {
                // Read until the client hangs up; never write a byte.
                let mut buf = [0u8; 4096];
                while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {}
                tx.send_modify(|s| s.open -= 1);
            });
        }
    });
    (format!("http://{addr}"), rx)
}

/// Group steps stuck on a member sidecar that accepts and never answers: each holds one
/// connection (a module cannot make the shared client open more than its calls in flight),
/// another node's sidecar call through the same shared HTTP client completes while they are all
/// stuck, each stuck call ends at the client's timeout as `unavailable` for its own step, and no
/// connection to the tarpit is left open afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_member_sidecar_stalls_only_its_own_steps() {
    let _one = ONE_AT_A_TIME.lock().await;
    let f = fixture().await;
    const STEPS: usize = 6;
    const CALLS: u32 = 2;
    let shared = HttpSidecarClient::http_client(Duration::from_secs(4)).unwrap();
    let (pit, mut seen) = tarpit().await;
    let healthy = answering_sidecar(json!({"status": "running"}).to_string()).await;

    let members: BTreeMap<String, Arc<dyn SidecarClient>> = (0..STEPS)
        .map(|i| {
            (format!("net-{i}"), Arc::new(HttpSidecarClient::with_http(pit.clone(), shared.clone()).unwrap()) as Arc<dyn SidecarClient>)
        })
        .collect();
    let group = group_env(members);
    let stuck: Vec<_> = (0..STEPS)
        .map(|i| {
            let env = group.clone();
            tokio::spawn(async move {
                let params = json!({"op": "status", "node": format!("net-{i}"), "count": CALLS});
                f.sandbox.run(&f.module, input("member-calls", params), &env).await
            })
        })
        .collect();
    // Every group step is now inside a call to the tarpit.
    tokio::time::timeout(Duration::from_secs(60), seen.wait_for(|s| s.open == STEPS))
        .await
        .expect("every group step reached the tarpit")
        .unwrap();

    let node = node_env(Arc::new(HttpSidecarClient::with_http(healthy, shared.clone()).unwrap()));
    let r = f.sandbox.run(&f.module, input("ungranted-sidecar", json!({})), &node).await;
    assert!(matches!(r.outcome, Ok(StepOutcome::Complete { .. })), "the other node's sidecar call: {:?}", r.outcome);
    assert!(r.host_calls.iter().all(|c| c.outcome == "ok"), "{:?}", r.host_calls);
    assert!(stuck.iter().all(|h| !h.is_finished()), "the healthy call finished while every group step was still stuck");
    assert_eq!(seen.borrow().open, STEPS, "one connection per stuck step, not more");

    for h in stuck {
        let r = h.await.unwrap();
        let out = completed(&r);
        let out = out.as_str().unwrap_or_default();
        assert!(out.contains("Unavailable"), "a stuck call is unavailable to its own step: {out}");
        assert_eq!(r.host_call_count, CALLS, "{:?}", r.host_calls);
    }
    tokio::time::timeout(Duration::from_secs(30), seen.wait_for(|s| s.open == 0))
        .await
        .expect("every connection to the tarpit is closed once the steps are over")
        .unwrap();
    assert_eq!(seen.borrow().accepted, STEPS * CALLS as usize, "one connection per call, none kept for later");
}

/// About 1,000 KiB of JSON (under the 1 MiB body cap) as a get-task answer whose `result` is
/// `[0,0,…]` (or, for `flat`, one string of the same size).
fn task_answer(flat: bool) -> String {
    let n = 500 * 1024;
    let result = if flat { Value::String("0".repeat(2 * n)) } else { Value::Array(vec![json!(0); n]) };
    let body = json!({"id": TASK_ID, "type": "assemble-genesis", "status": "completed", "result": result}).to_string();
    assert!(body.len() > 1000 * 1024 && body.len() < MIB, "{}", body.len());
    body
}

/// The host's growth for one step of `mode` whose sidecar answers `body`.
async fn growth(mode: &str, body: String) -> (RunReport, usize) {
    let f = fixture().await;
    let client =
        Arc::new(HttpSidecarClient::new(answering_sidecar(body).await, Duration::from_secs(10)).unwrap()) as Arc<dyn SidecarClient>;
    let (env, params) = if mode == "member-calls" {
        (group_env([("net-0".to_string(), client)].into()), json!({"op": "get-task", "node": "net-0", "id": TASK_ID}))
    } else {
        (node_env(client), json!({}))
    };
    peak_growth(f.sandbox.run(&f.module, input(mode, params), &env)).await
}

/// A member sidecar (whose image a group task with `kube-write` chooses) answers get-task with a
/// `result` of half a million numbers, just under the body cap: the host must not build a
/// parsed tree of it (about 32 bytes a value) to hand the guest text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_sidecar_answer_costs_the_host_its_bytes_not_a_parsed_tree() {
    let _one = ONE_AT_A_TIME.lock().await;
    fixture().await;
    let (flat, flat_growth) = growth("member-calls", task_answer(true)).await;
    assert!(completed(&flat)["outputBytes"].as_u64().is_some(), "the guest gets the output: {:?}", flat.outcome);
    let (tree, tree_growth) = growth("member-calls", task_answer(false)).await;
    assert!(completed(&tree)["outputBytes"].as_u64().is_some(), "the guest gets the output: {:?}", tree.outcome);
    eprintln!("member get-task: a flat answer grew the host by {flat_growth} bytes, an array answer by {tree_growth} bytes");
    assert!(
        tree_growth < 8 * MIB,
        "a 1 MiB member sidecar answer grew the host by {} MiB (a flat one of the same size: {} MiB)",
        tree_growth / MIB,
        flat_growth / MIB
    );
}

/// The same for a node task polling its own sidecar: the `result` it never sees must not be
/// parsed into a tree either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sidecar_answer_costs_the_host_its_bytes_not_a_parsed_tree() {
    let _one = ONE_AT_A_TIME.lock().await;
    fixture().await;
    let (flat, flat_growth) = growth("sidecar-get-task", task_answer(true)).await;
    assert_eq!(completed(&flat), json!("Ok(\"completed\")"));
    let (tree, tree_growth) = growth("sidecar-get-task", task_answer(false)).await;
    assert_eq!(completed(&tree), json!("Ok(\"completed\")"));
    eprintln!("node get-task: a flat answer grew the host by {flat_growth} bytes, an array answer by {tree_growth} bytes");
    assert!(
        tree_growth < 8 * MIB,
        "a 1 MiB sidecar answer grew the host by {} MiB (a flat one of the same size: {} MiB)",
        tree_growth / MIB,
        flat_growth / MIB
    );
}
