//! Where a simulated world's memory goes, measured: the heap bytes each
//! part frees when it is dropped at the end of a run, and the resident
//! memory the process gives back (`nodeplane bench --only speed`).
//!
//! Heap bytes come from a counting global allocator that the program
//! registers with [`set_heap_probe`] (the `nodeplane` binary does; without
//! one the heap figures are absent). Linear memories of the guests are
//! mapped by wasmtime, not allocated on the heap: they appear in the
//! resident figure released when the nodes are dropped, and exactly in
//! [`nodeplane_runtime::Node::guest_memory_bytes`].

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use crate::bench::rss_bytes;
use crate::world::Sim;

static HEAP_PROBE: OnceLock<fn() -> usize> = OnceLock::new();

/// Registers `probe`, which answers the heap bytes allocated now (a
/// counting global allocator's figure). The first registration stays.
pub fn set_heap_probe(probe: fn() -> usize) {
    let _ = HEAP_PROBE.set(probe);
}

/// Heap bytes allocated now, when a probe is registered.
pub fn heap_bytes() -> Option<usize> {
    HEAP_PROBE.get().map(|probe| probe())
}

/// Heap and resident bytes freed by one step of [`Sim::dismantle`].
struct Freed {
    heap: Option<usize>,
    rss: Option<u64>,
}

fn measure(step: impl FnOnce()) -> Freed {
    let (heap, rss) = (heap_bytes(), rss_bytes());
    step();
    Freed {
        heap: heap.zip(heap_bytes()).map(|(b, a)| b.saturating_sub(a)),
        rss: rss.zip(rss_bytes()).map(|(b, a)| b.saturating_sub(a)),
    }
}

impl Sim {
    /// Drops the world part by part and reports, per node, the heap bytes
    /// each part held (`*_heap_per_node_bytes`) and the resident bytes
    /// the process gave back (`*_rss_released_per_node_bytes`; the heap
    /// allocator keeps most freed memory, so these are lower bounds except
    /// for mapped linear memories). The parts, in the order dropped:
    ///
    /// - `sim_observations`: every observed view transition and the false
    ///   verdict sets;
    /// - `sim_views`: the world's copy of every node's view (N × N);
    /// - `sim_queue`: events queued (messages in flight and timers);
    /// - `sim_network`: faults, counters and uplinks;
    /// - `sim_trace_samples`: the trace's recent excerpt and view samples;
    /// - `host_ledger_store`: every node's in-memory ledger store;
    /// - `host_view_mirror`: the runtime's per-node mirror of the view;
    /// - `node_instance_and_services`: what is left of each node: the
    ///   wasmtime store and instance (its linear memory is mapped, not
    ///   heap), the host services, subscriptions and the node's own
    ///   bookkeeping; its resident figure includes the linear memories
    ///   unmapped;
    /// - `shared_signature_memo`: the process-wide memo of checked
    ///   signatures;
    /// - `world_rest`: the engine, the compiled component and the indexes.
    pub fn dismantle(mut self) -> Value {
        let nodes = self.nodes.len().max(1);
        let heap_start = heap_bytes();
        let mut parts: Vec<(&str, Freed)> = Vec::new();
        parts.push((
            "sim_observations",
            measure(|| drop(std::mem::take(&mut self.observations))),
        ));
        parts.push((
            "sim_views",
            measure(|| drop(std::mem::take(&mut self.views))),
        ));
        parts.push((
            "sim_queue",
            measure(|| drop(std::mem::take(&mut self.queue))),
        ));
        parts.push((
            "sim_network",
            measure(|| drop(std::mem::take(&mut self.network))),
        ));
        parts.push((
            "sim_trace_samples",
            measure(|| {
                drop(std::mem::take(&mut self.samples));
                drop(std::mem::take(&mut self.trace));
            }),
        ));
        let stores = measure(|| {
            for slot in &mut self.nodes {
                drop(slot.parked.take());
                if let Some(node) = &slot.node {
                    drop(std::mem::take(&mut node.lock().services_mut().ledger));
                }
            }
            drop(std::mem::take(&mut self.pool));
        });
        parts.push(("host_ledger_store", stores));
        parts.push((
            "host_view_mirror",
            measure(|| {
                for slot in &self.nodes {
                    if let Some(node) = &slot.node {
                        node.lock().release_mirror();
                    }
                }
            }),
        ));
        parts.push((
            "node_instance_and_services",
            measure(|| drop(std::mem::take(&mut self.nodes))),
        ));
        parts.push((
            "shared_signature_memo",
            measure(|| nodeplane_runtime::signing::VerifyMemo::shared().clear()),
        ));
        parts.push(("world_rest", measure(|| drop(self))));
        let mut out = Map::new();
        for (name, freed) in parts {
            out.insert(
                format!("{name}_heap_per_node_bytes"),
                json!(freed.heap.map(|b| b / nodes)),
            );
            out.insert(
                format!("{name}_rss_released_per_node_bytes"),
                json!(freed.rss.map(|b| b / nodes as u64)),
            );
        }
        let freed: usize = out
            .iter()
            .filter(|(k, _)| k.ends_with("_heap_per_node_bytes"))
            .filter_map(|(_, v)| v.as_u64())
            .map(|b| b as usize)
            .sum();
        out.insert("heap_at_end_bytes".into(), json!(heap_start));
        out.insert(
            "heap_freed_per_node_bytes".into(),
            json!(heap_start.map(|_| freed)),
        );
        Value::Object(out)
    }
}
