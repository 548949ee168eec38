use nodeplane_core::testkit::Sim;
use nodeplane_core::wire;
use nodeplane_core::node::Effect;
use std::collections::BTreeMap;
fn main() {
    let mut sim = Sim::new(64, 1);
    sim.start_all();
    sim.run_until_pred(100, 120_000, |s| s.converged());
    sim.run_for(10000);
    // sample node 5's sends over 10 s by wrapping: inspect effects through a fresh run
    let mut per: BTreeMap<&'static str, (u64,u64)> = BTreeMap::new();
    for _ in 0..100 {
        sim.run_for(100);
        for sn in sim.nodes.iter_mut() { let _ = sn; }
    }
    // use logs as proxy
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for sn in &sim.nodes { for (k,_) in &sn.logs { *kinds.entry(k.clone()).or_default() += 1; } }
    println!("{kinds:?}");
    let n = sim.nodes[0].node.as_mut().unwrap();
    n.handle_timer(sim.now, 1);
    for e in n.drain_effects() { if let Effect::Send{payload, ..} = e { let m = wire::decode(&payload).unwrap(); let x = per.entry(m.name()).or_default(); x.0+=1; x.1+=payload.len() as u64; println!("{:?}", m); } }
    println!("{per:?}");
}
