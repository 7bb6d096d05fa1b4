//! The results of a conformance run: [`Outcome`], [`CaseResult`], [`Report`].

use std::fmt;
use std::time::Duration;

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check held.
    Passed,
    /// A check failed, the backend returned an unexpected error, panicked or hung.
    Failed(String),
    /// Not selected by the backend's capability (the reason says which).
    Skipped(&'static str),
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case name.
    pub name: &'static str,
    /// The contract bullet it checks.
    pub bullet: &'static str,
    /// What happened.
    pub outcome: Outcome,
    /// How long it took.
    pub elapsed: Duration,
}

impl fmt::Display for CaseResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.elapsed.as_secs_f64() * 1e3;
        match &self.outcome {
            Outcome::Passed => write!(f, "ok   {:<34} {ms:>9.1} ms", self.name),
            Outcome::Failed(m) => write!(f, "FAIL {:<34} {ms:>9.1} ms: {m}", self.name),
            Outcome::Skipped(r) => write!(f, "skip {:<34} ({r})", self.name),
        }
    }
}

/// The results of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The backend kind.
    pub backend: &'static str,
    /// One result per case, in run order.
    pub cases: Vec<CaseResult>,
}

impl Report {
    /// Whether no case failed.
    pub fn is_success(&self) -> bool {
        self.failed() == 0
    }
    /// Number of passed cases.
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Passed))
    }
    /// Number of failed cases.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }
    /// Number of skipped cases.
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }
    /// The result of the case called `name`.
    pub fn case(&self, name: &str) -> Option<&CaseResult> {
        self.cases.iter().find(|c| c.name == name)
    }
    /// The names of the failed cases.
    pub fn failed_names(&self) -> Vec<&'static str> {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
            .map(|c| c.name)
            .collect()
    }
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.cases.iter().filter(|c| f(&c.outcome)).count()
    }
    /// A multi-line description of every failed case (what [`Conformance::run`](super::Conformance::run) panics with).
    pub fn failure_summary(&self) -> String {
        let mut s = format!(
            "conformance suite: backend `{}` failed {} of {} cases:",
            self.backend,
            self.failed(),
            self.cases.len() - self.skipped()
        );
        for c in &self.cases {
            if let Outcome::Failed(m) = &c.outcome {
                s.push_str(&format!(
                    "\n- {} (contract: {})\n    {}",
                    c.name, c.bullet, m
                ));
            }
        }
        s
    }
}
