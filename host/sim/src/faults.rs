//! Faults injected into a running [`Sim`]: partitions, one-way blocks,
//! mute and isolated nodes, loss. Each is recorded in the trace.

use crate::world::Sim;

impl Sim {
    /// Blocks every message between the sets `a` and `b`, both ways.
    pub fn partition(&mut self, a: &[usize], b: &[usize]) {
        self.action(format!("partition {a:?} | {b:?}"));
        for &x in a {
            for &y in b {
                self.network.faults.blocked.insert((x, y));
                self.network.faults.blocked.insert((y, x));
            }
        }
    }

    /// Blocks messages from the set `from` to the set `to` only.
    pub fn block_one_way(&mut self, from: &[usize], to: &[usize]) {
        self.action(format!("block {from:?} -> {to:?}"));
        for &x in from {
            for &y in to {
                self.network.faults.blocked.insert((x, y));
            }
        }
    }

    /// Blocks the given pairs, both ways.
    pub fn block_pairs(&mut self, pairs: &[(usize, usize)]) {
        self.action(format!("block {} pairs", pairs.len()));
        for &(x, y) in pairs {
            self.network.faults.blocked.insert((x, y));
            self.network.faults.blocked.insert((y, x));
        }
    }

    /// Drops every message node `i` sends (it still receives).
    pub fn mute(&mut self, i: usize) {
        self.action(format!("mute n{i}"));
        self.network.faults.mute.insert(i);
    }

    /// Takes all of node `i`'s links down (`true`) or up (`false`).
    pub fn isolate(&mut self, i: usize, down: bool) {
        self.action(format!("isolate n{i} {down}"));
        if down {
            self.network.faults.isolated.insert(i);
        } else {
            self.network.faults.isolated.remove(&i);
        }
    }

    /// Removes every fault (partitions, blocks, mute, isolation).
    pub fn heal(&mut self) {
        self.action("heal".into());
        self.network.faults = Default::default();
    }

    /// Sets the loss probability of every message from now on.
    pub fn set_loss(&mut self, p: f64) {
        self.action(format!("loss {p}"));
        self.network.config.loss = p;
    }
}
