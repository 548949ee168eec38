//! The host services of one simulated node. They only record: the
//! simulator drains the outbox, timer settings and log lines after every
//! guest call and turns them into queued events.

use std::collections::HashMap;

use nodeplane_runtime::{LedgerStore, MemoryLedger, Services};

/// A timer setting recorded during a call: (timer, due time, generation).
pub type TimerSetting = (u64, u64, u64);

/// Services of one simulated node (virtual clock, buffered effects,
/// in-memory ledger).
#[derive(Debug, Default)]
pub struct SimServices {
    /// Virtual time, set by the simulator before every call.
    pub now_ms: u64,
    /// Seed handed to the instance at start.
    pub seed: u64,
    /// Messages sent during the current call: (address, payload).
    pub outbox: Vec<(String, Vec<u8>)>,
    /// Timers set during the current call.
    pub timer_settings: Vec<TimerSetting>,
    /// Live timers: id → generation of the setting in force.
    pub active_timers: HashMap<u64, u64>,
    next_generation: u64,
    /// The durable store; kept across crashes by the simulator.
    pub ledger: MemoryLedger,
    /// Log lines recorded during the current call: (kind, detail).
    pub log: Vec<(String, String)>,
}

impl SimServices {
    /// Services over `ledger`, handing `seed` to the instance.
    pub fn new(seed: u64, ledger: MemoryLedger) -> SimServices {
        SimServices {
            seed,
            ledger,
            ..SimServices::default()
        }
    }

    /// Consumes the timer `timer` if `generation` is the setting in force.
    pub fn take_timer(&mut self, timer: u64, generation: u64) -> bool {
        if self.active_timers.get(&timer) == Some(&generation) {
            self.active_timers.remove(&timer);
            true
        } else {
            false
        }
    }
}

impl Services for SimServices {
    fn now_ms(&mut self) -> u64 {
        self.now_ms
    }

    fn seed(&mut self) -> u64 {
        self.seed
    }

    fn send(&mut self, to: &str, payload: Vec<u8>) {
        self.outbox.push((to.to_string(), payload));
    }

    fn set_timer(&mut self, timer: u64, after_ms: u64) {
        self.next_generation += 1;
        let generation = self.next_generation;
        self.active_timers.insert(timer, generation);
        self.timer_settings
            .push((timer, self.now_ms.saturating_add(after_ms), generation));
    }

    fn cancel_timer(&mut self, timer: u64) {
        self.active_timers.remove(&timer);
    }

    fn cancel_all_timers(&mut self) {
        self.active_timers.clear();
    }

    fn ledger(&mut self) -> &mut dyn LedgerStore {
        &mut self.ledger
    }

    fn log_event(&mut self, kind: &str, detail: &str) {
        self.log.push((kind.to_string(), detail.to_string()));
    }
}
