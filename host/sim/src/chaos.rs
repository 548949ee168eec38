//! Random fault schedules: crashes and restarts, partitions, one-way
//! blocks, mute and isolated nodes, a graceful leave, loss changes, all
//! drawn from the simulator's seed. A world with hostile nodes
//! ([`SimBuilder::hostile`](crate::SimBuilder::hostile)) also gets bursts of
//! hostile messages on top of their own schedule; a world without draws
//! exactly the schedule it drew before hostile nodes existed.

use std::time::Duration;

use crate::world::Sim;
use crate::SimError;

/// Virtual time between two fault steps.
pub const STEP_MS: u64 = 5_000;
/// Largest loss probability a schedule sets.
pub const MAX_LOSS: f64 = 0.10;
/// Probability that a step of a world with hostile nodes starts with a
/// burst of hostile messages.
pub const HOSTILE_BURST_CHANCE: f64 = 0.3;
/// Messages in one hostile burst (each of a random attack, to a random
/// node, in the same instant: many at once, as a flood would).
pub const HOSTILE_BURST: usize = 20;

/// Runs `steps` random fault steps of [`STEP_MS`] each, then heals the
/// network and restarts every crashed node (the caller then checks the
/// invariants). At most one node leaves; node 0 never leaves.
pub fn random_faults(sim: &mut Sim, steps: usize) -> Result<(), SimError> {
    let n = sim.len();
    let mut left = false;
    for _ in 0..steps {
        let hostiles = sim.hostiles().len();
        if hostiles > 0 && sim.rng().chance(HOSTILE_BURST_CHANCE) {
            let k = sim.rng().below(hostiles as u64) as usize;
            sim.hostile_burst(k, HOSTILE_BURST);
        }
        let pick = sim.rng().below(n as u64) as usize;
        let other = sim.rng().below(n as u64) as usize;
        match sim.rng().below(10) {
            0 | 1 => {
                if sim.node(pick).is_running() && !sim.node(pick).left {
                    sim.crash(pick);
                }
            }
            2 | 3 => {
                let down: Vec<usize> = (0..n).filter(|&i| !sim.node(i).is_running()).collect();
                if let Some(&i) = down.first() {
                    sim.restart(i)?;
                }
            }
            4 => {
                let cut = 1 + sim.rng().below(n as u64 - 1) as usize;
                let a: Vec<usize> = (0..cut).collect();
                let b: Vec<usize> = (cut..n).collect();
                sim.partition(&a, &b);
            }
            5 => {
                if pick != other {
                    sim.block_one_way(&[pick], &[other]);
                }
            }
            6 => sim.mute(pick),
            7 => {
                let down = sim.rng().chance(0.5);
                sim.isolate(pick, down);
            }
            8 => {
                if !left && pick != 0 && sim.is_live(pick) && sim.component().is_nodeplane() {
                    left = true;
                    sim.leave(pick)?;
                }
            }
            _ => {
                let loss = (sim.rng().below(1000) as f64 / 1000.0) * MAX_LOSS;
                sim.heal();
                sim.set_loss(loss);
            }
        }
        sim.run_for(Duration::from_millis(STEP_MS));
    }
    sim.heal();
    for i in 0..n {
        if !sim.node(i).is_running() {
            sim.restart(i)?;
        }
    }
    Ok(())
}
