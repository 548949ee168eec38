//! The node's local event log: JSON lines in `data_dir/events.jsonl`, not
//! replicated. Each line: `{"ts_ms", "source": "component"|"agent", "kind",
//! "detail"}`, where `ts_ms` is milliseconds since the Unix epoch.
//!
//! The log rotates by size: once `events.jsonl` reaches
//! [`MAX_EVENT_LOG_BYTES`] it becomes `events.jsonl.1` (the older ones shift
//! up to `events.jsonl.`[`EVENT_LOG_GENERATIONS`], the oldest is deleted)
//! and a fresh `events.jsonl` is started, so the log never holds more than
//! about `(1 + EVENT_LOG_GENERATIONS) * MAX_EVENT_LOG_BYTES` on disk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::metrics::{Metrics, EVENT_LOG_DROPPED_BYTES, EVENT_LOG_ROTATIONS};

/// File name of the event log inside the data directory.
pub const EVENTS_FILE: &str = "events.jsonl";
/// Size at which `events.jsonl` is rotated. 8 MiB holds tens of thousands
/// of events — days of a busy node's history, enough for an operator's
/// investigation — while a peer that makes the node log on every message
/// can fill at most `(1 + EVENT_LOG_GENERATIONS) * 8 MiB` of disk.
pub const MAX_EVENT_LOG_BYTES: u64 = 8 * 1024 * 1024;
/// Rotated generations kept (`events.jsonl.1` ..= `.N`); the oldest is
/// deleted when a new one is made.
pub const EVENT_LOG_GENERATIONS: usize = 2;

/// Who recorded an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A `log-event` from the component.
    Component,
    /// A decision of the agent itself.
    Agent,
}

#[derive(Debug)]
struct Current {
    file: File,
    /// Bytes in the current file.
    size: u64,
}

/// An append-only JSON-lines event log, rotated by size; clones share the
/// file.
#[derive(Clone, Debug)]
pub struct EventLog {
    path: PathBuf,
    max_bytes: u64,
    current: Arc<Mutex<Current>>,
    metrics: Option<Arc<Metrics>>,
}

/// Milliseconds since the Unix epoch.
pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl EventLog {
    /// Opens (creating) `data_dir/events.jsonl` for appending.
    pub fn open(data_dir: &Path) -> std::io::Result<EventLog> {
        EventLog::open_with_limit(data_dir, MAX_EVENT_LOG_BYTES)
    }

    /// Opens the log, rotating at `max_bytes` instead of
    /// [`MAX_EVENT_LOG_BYTES`] (tests).
    pub fn open_with_limit(data_dir: &Path, max_bytes: u64) -> std::io::Result<EventLog> {
        let path = data_dir.join(EVENTS_FILE);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(EventLog {
            path,
            max_bytes: max_bytes.max(1),
            current: Arc::new(Mutex::new(Current { file, size })),
            metrics: None,
        })
    }

    /// Counts rotations and discarded bytes in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> EventLog {
        self.metrics = Some(metrics);
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of rotated generation `n` (1 = the most recent).
    pub fn generation_path(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Appends one event. `detail` is kept as JSON when it parses, as a
    /// string otherwise. Failures to write are logged, never fatal.
    pub fn record(&self, source: Source, kind: &str, detail: &str) {
        let detail: serde_json::Value = serde_json::from_str(detail)
            .unwrap_or_else(|_| serde_json::Value::String(detail.to_string()));
        self.record_value(source, kind, detail);
    }

    /// Appends one event with a JSON detail.
    pub fn record_value(&self, source: Source, kind: &str, detail: serde_json::Value) {
        let line = serde_json::json!({
            "ts_ms": epoch_ms(),
            "source": match source { Source::Component => "component", Source::Agent => "agent" },
            "kind": kind,
            "detail": detail,
        });
        let mut text = line.to_string();
        text.push('\n');
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match current.file.write_all(text.as_bytes()) {
            Ok(()) => current.size = current.size.saturating_add(text.len() as u64),
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "could not write the event log")
            }
        }
        if current.size >= self.max_bytes {
            self.rotate(&mut current);
        }
    }

    /// Shifts the generations up, deleting the oldest, and starts a new
    /// file. On failure the current file is kept (and rotation retried once
    /// it has grown by another `max_bytes`).
    fn rotate(&self, current: &mut Current) {
        let oldest = self.generation_path(EVENT_LOG_GENERATIONS);
        let dropped = std::fs::metadata(&oldest).map_or(0, |m| m.len());
        let result = (|| -> std::io::Result<File> {
            if oldest.exists() {
                std::fs::remove_file(&oldest)?;
            }
            for n in (1..EVENT_LOG_GENERATIONS).rev() {
                let from = self.generation_path(n);
                if from.exists() {
                    std::fs::rename(&from, self.generation_path(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.generation_path(1))?;
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
        })();
        match result {
            Ok(file) => {
                current.file = file;
                current.size = 0;
                if let Some(m) = &self.metrics {
                    m.limit(EVENT_LOG_ROTATIONS, "size", 1);
                    m.limit(EVENT_LOG_DROPPED_BYTES, "size", dropped);
                }
                tracing::info!(path = %self.path.display(), dropped_bytes = dropped, "rotated the event log");
            }
            Err(e) => {
                current.size = 0;
                tracing::warn!(error = %e, path = %self.path.display(), "could not rotate the event log; appending to it");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn writes_json_lines() {
        let dir = TempDir::new("events");
        let log = EventLog::open(dir.path()).unwrap();
        log.record(Source::Component, "suspected", r#"{"peer":"n2"}"#);
        log.record(Source::Agent, "started", "plain text");
        let text = std::fs::read_to_string(dir.path().join(EVENTS_FILE)).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["detail"]["peer"], "n2");
        assert_eq!(lines[0]["source"], "component");
        assert_eq!(lines[1]["detail"], "plain text");
        assert!(lines[1]["ts_ms"].as_u64().unwrap() > 0);
    }

    #[test]
    fn rotates_by_size_keeping_a_few_generations() {
        let dir = TempDir::new("events-rotate");
        let metrics = Arc::new(Metrics::default());
        let log = EventLog::open_with_limit(dir.path(), 1000)
            .unwrap()
            .with_metrics(Arc::clone(&metrics));
        let detail = "x".repeat(300);
        for _ in 0..40 {
            log.record(Source::Agent, "filler", &detail);
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(log.path()) < 1000 + 400);
        for n in 1..=EVENT_LOG_GENERATIONS {
            let g = size(&log.generation_path(n));
            assert!((1000..1400).contains(&g), "generation {n}: {g} bytes");
        }
        assert!(!log.generation_path(EVENT_LOG_GENERATIONS + 1).exists());
        let rotations = metrics.limit_count(EVENT_LOG_ROTATIONS, "size");
        assert!(rotations >= 10, "{rotations} rotations");
        assert!(metrics.limit_count(EVENT_LOG_DROPPED_BYTES, "size") > 0);
        // Still writing, and a reopened log continues the current size.
        log.record(Source::Agent, "last", "{}");
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(text.lines().last().unwrap().contains("\"last\""));
        let reopened = EventLog::open_with_limit(dir.path(), 1000).unwrap();
        let before = size(&reopened.generation_path(1));
        for _ in 0..4 {
            reopened.record(Source::Agent, "filler", &detail);
        }
        assert_ne!(size(&reopened.generation_path(1)), before);
    }
}
