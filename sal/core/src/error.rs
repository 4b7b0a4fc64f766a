//! The one error of SAL's pure part: a configuration no trial can run with.

/// A `sal` setting out of its range; `field` is its key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid sal config: `{field}` {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}
