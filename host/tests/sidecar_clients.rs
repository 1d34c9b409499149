//! What a node's sidecar client costs the controller (issue #15): every node's client shares
//! one HTTP client (one connection pool, one TLS configuration), so a node adds a few hundred
//! bytes, not a client of its own. Measured with a counting allocator: the live heap kept by 500
//! nodes' clients.

use sei_operator::adapters::node_sidecars::{SidecarResolver, Sidecars};
use sei_operator::api::seinode::SeiNode;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded to the system allocator with the pointer and layout it gave out.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the caller's arguments.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn node(i: usize) -> SeiNode {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode", "metadata": {"name": format!("rpc-{i}"), "namespace": "sei"},
        "spec": {"chainId": "pacific-1", "image": "seid:v1", "fullNode": {}}
    }))
    .unwrap()
}

#[test]
fn a_node_adds_a_few_hundred_bytes_not_an_http_client() {
    let nodes: Vec<SeiNode> = (0..500).map(node).collect();
    let sidecars = Sidecars::new(SidecarResolver::PodDns);
    // The first client pays for what every node shares.
    let _first = sidecars.client_for(&nodes[0]).expect("a client");
    let before = LIVE.load(Ordering::Relaxed);
    let clients: Vec<_> = nodes[1..].iter().map(|n| sidecars.client_for(n).expect("a client")).collect();
    let per_node = (LIVE.load(Ordering::Relaxed) - before) / clients.len() as isize;
    println!("{per_node} bytes of heap per node's sidecar client (499 nodes)");
    assert!(per_node < 2048, "each node's sidecar client keeps {per_node} bytes: an HTTP client of its own?");
}
