//! Why a trial definition was refused.

/// A definition no trial can run with; `field` is its dotted path in the trial file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// A field holds a value no trial can run with (`dataset.options.val_fraction`).
    #[error("`{field}`: {reason}")]
    InvalidField { field: String, reason: String },
}

impl SpecError {
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError::InvalidField { field: field.into(), reason: reason.into() }
    }

    /// The dotted path of the field at fault.
    pub fn field_path(&self) -> &str {
        match self {
            SpecError::InvalidField { field, .. } => field,
        }
    }
}

impl From<sal_core::ConfigError> for SpecError {
    fn from(error: sal_core::ConfigError) -> Self {
        SpecError::InvalidField { field: format!("sal.{}", error.field), reason: error.reason }
    }
}
