//! What can go wrong while getting or checking data; every message is one line that names the
//! file, URL or archive member it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{}: {message}; nothing was extracted", file.display())]
    Checksum { file: PathBuf, message: String },
    #[error("{}: member `{member}`: {message}; nothing was published", archive.display())]
    UnsafeMember { archive: PathBuf, member: String, message: String },
    #[error("{}: {message}; nothing was published", archive.display())]
    Archive { archive: PathBuf, message: String },
    #[error("{file}: {message}")]
    Catalogue { file: String, message: String },
    #[error("{name}: {message}")]
    Entry { name: String, message: String },
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }

    pub fn entry(name: impl Into<String>, message: impl Into<String>) -> Self {
        DataError::Entry { name: name.into(), message: message.into() }
    }
}
