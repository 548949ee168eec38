//! Smoke run: `cargo run -p nodeplane-sim --example smoke -- nodeplane 8 7`.
use std::time::{Duration, Instant};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let comp =
        nodeplane_sim::ComponentChoice::parse(args.get(1).map(String::as_str).unwrap_or("stub"));
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
    let seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(7);
    let t = Instant::now();
    let mut sim = nodeplane_sim::Sim::builder()
        .nodes(n)
        .seed(seed)
        .component(comp)
        .build()
        .unwrap();
    println!("built in {:?}", t.elapsed());
    let c = sim.run_until_converged(Duration::from_secs(60));
    println!(
        "converged {c:?} wall {:?} trace {}",
        t.elapsed(),
        sim.trace().len()
    );
    sim.run_for(Duration::from_secs(30));
    println!("sent {:?} wall {:?}", sim.sent_totals(), t.elapsed());
    sim.crash(3);
    sim.run_for(Duration::from_secs(20));
    println!("n0 sees n3 {:?}", sim.state_of(0, 3));
    sim.restart(3).unwrap();
    let r = sim.check(nodeplane_sim::Expect::Converge);
    println!(
        "check {:?} wall {:?} hash {}",
        r.err().map(|e| e.to_string()),
        t.elapsed(),
        sim.trace_hash()
    );
}
