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
    /// Every check, in order (none when the component could not be run).
    pub checks: Vec<CheckResult>,
    /// Why the component could not be run at all (instantiation failed,
    /// or `driver.info` crashed): then no check ran.
    pub load_failure: Option<String>,
}

impl Report {
    /// Number of checks passed.
    pub fn passed(&self) -> usize {
        self.checks.iter().filter(|c| c.failure.is_none()).count()
    }
    /// Number of checks failed (1 for a component that could not be run).
    pub fn failed(&self) -> usize {
        let failed = self.checks.len().saturating_sub(self.passed());
        failed.saturating_add(usize::from(self.load_failure.is_some()))
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
    /// One line per check, then `N passed, M failed`; for a component that
    /// could not be run, one `FAIL  load` line with the reason.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(why) = &self.load_failure {
            out.push_str(&format!(
                "FAIL  load: the component cannot be run, so no check ran: {why}\n"
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_that_cannot_run_fails_once_with_its_reason() {
        let report = Report {
            checks: Vec::new(),
            load_failure: Some("instantiating it failed: instance count too high at 17".into()),
        };
        assert_eq!(report.failed(), 1);
        assert_eq!(
            report.render(),
            "FAIL  load: the component cannot be run, so no check ran: instantiating it failed: instance count too high at 17\n0 passed, 1 failed\n"
        );
    }
}
