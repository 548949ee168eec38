//! The simulator over the real components: every scenario with its
//! invariants, random fault schedules over many seeds, determinism; and
//! every scenario at the documented N = 64 against its documented bounds;
//! no progress output off a terminal.

mod documented;
mod progress;
mod scenarios;
