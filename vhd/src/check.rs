//! Structural check reports shared by every format.

use serde::Serialize;

use crate::Format;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The image is damaged: data may be lost or misread.
    Error,
    /// Space is wasted (leaked blocks) but no data is at risk.
    Leak,
    /// Unusual but harmless.
    Warning,
}

/// One problem found by a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How serious it is.
    pub severity: Severity,
    /// Byte offset in the file of the structure concerned, when there is one.
    pub offset: Option<u64>,
    /// What is wrong, as a lower-case sentence.
    pub message: String,
    /// Whether `--repair` fixed it.
    pub repaired: bool,
}

/// The result of checking an image file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// Format of the checked file.
    pub format: Format,
    /// Everything found, in file order where possible.
    pub findings: Vec<Finding>,
    /// Whether a log (VHDX) held unreplayed entries when the check began.
    pub log_was_dirty: bool,
    /// Number of allocated blocks seen.
    pub allocated_blocks: u64,
    /// Total blocks of the image (0 for formats without blocks).
    pub total_blocks: u64,
}

impl CheckReport {
    /// An empty report for `format`.
    pub fn new(format: Format) -> Self {
        CheckReport {
            format,
            findings: Vec::new(),
            log_was_dirty: false,
            allocated_blocks: 0,
            total_blocks: 0,
        }
    }

    /// Records a finding.
    pub fn add(&mut self, severity: Severity, offset: Option<u64>, message: impl Into<String>) {
        self.findings.push(Finding {
            severity,
            offset,
            message: message.into(),
            repaired: false,
        });
    }

    /// Unrepaired findings of `severity`.
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity && !f.repaired)
            .count()
    }

    /// Whether no unrepaired error or leak remains.
    pub fn is_clean(&self) -> bool {
        self.count(Severity::Error) == 0 && self.count(Severity::Leak) == 0
    }
}
