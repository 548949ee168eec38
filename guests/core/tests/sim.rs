//! Multi-node scenarios on the deterministic harness.

use nodeplane_core::testkit::Sim;
use nodeplane_core::PeerState;

#[test]
fn five_nodes_converge() {
    for seed in 1..=3 {
        let mut sim = Sim::new(5, seed);
        sim.start_all();
        let t = sim.run_until_pred(100, 20_000, |s| s.converged());
        assert!(t.is_some(), "seed {seed}: not converged");
        sim.run_for(2_000);
        assert!(sim.ledgers_identical(), "seed {seed}: ledgers differ");
        eprintln!("seed {seed}: converged in {:?} ms", t);
    }
}
