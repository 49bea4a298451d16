//! Components that died: what `/health` reports and what makes `sonde run`
//! exit non-zero.

use std::sync::{Arc, Mutex};

use crate::component::ComponentInfo;

/// One component that stopped by failing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Failure {
    /// `source "demo" "gen"`.
    pub component: String,
    /// The error or panic message.
    pub error: String,
}

/// The failures so far, shared with whoever reports them.
#[derive(Debug, Clone, Default)]
pub struct Failures(Arc<Mutex<Vec<Failure>>>);

impl Failures {
    pub(super) fn record(&self, info: &ComponentInfo, error: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(Failure {
            component: info.to_string(),
            error,
        });
    }

    /// Every failure so far, oldest first.
    pub fn list(&self) -> Vec<Failure> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
