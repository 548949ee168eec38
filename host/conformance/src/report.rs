//! The outcome of a conformance run and its text rendering.

/// The outcome of one check.
#[derive(Clone, Debug)]
pub struct CheckResult {
    /// The check's name (stable; tests refer to it).
    pub name: &'static str,
    /// `None` when it passed, else what went wrong.
    pub failure: Option<String>,
}

/// The outcome of a whole run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Every check, in order.
    pub checks: Vec<CheckResult>,
}

impl Report {
    /// Number of checks passed.
    pub fn passed(&self) -> usize {
        self.checks.iter().filter(|c| c.failure.is_none()).count()
    }
    /// Number of checks failed.
    pub fn failed(&self) -> usize {
        self.checks.len() - self.passed()
    }
    /// The names of the failed checks.
    pub fn failures(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| c.failure.is_some())
            .map(|c| c.name)
            .collect()
    }
    /// Why the check whose name starts with `id` failed (`None` if it
    /// passed or does not exist).
    pub fn failure_of(&self, id: &str) -> Option<&str> {
        self.checks
            .iter()
            .find(|c| c.name == id || c.name.starts_with(&format!("{id} ")))
            .and_then(|c| c.failure.as_deref())
    }
    /// One line per check, then `N passed, M failed`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            match &c.failure {
                None => out.push_str(&format!("pass  {}\n", c.name)),
                Some(why) => out.push_str(&format!("FAIL  {}: {why}\n", c.name)),
            }
        }
        out.push_str(&format!(
            "{} passed, {} failed\n",
            self.passed(),
            self.failed()
        ));
        out
    }
}
