//! The simulator over the real components: every scenario with its
//! invariants, random fault schedules over many seeds, determinism; and
//! every scenario at the documented N = 64 against its documented bounds;
//! the churn yardstick at small scale;
//! no progress output off a terminal.

mod checkpoints;
mod churn;
mod documented;
mod progress;
mod scenarios;
