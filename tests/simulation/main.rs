//! The simulator over the real components: every scenario with its
//! invariants, random fault schedules over many seeds, determinism.

mod scenarios;
