//! One file over HTTP(S), resumable: the bytes go to `<file>.part`, a dropped connection or an
//! interrupted run continues from where it stopped with a `Range: bytes=N-` request, and the file
//! only takes its real name once every byte arrived. A server that ignores the range (answers
//! 200) is read again from the start. The progress bar is drawn only on a terminal.

use std::fs::OpenOptions;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::DataError;

/// How hard to try.
#[derive(Debug, Clone)]
pub struct Options {
    /// Attempts after the first, each resuming where the last one stopped.
    pub retries: u32,
    /// Waited before retry `n`: `n` times this (a flaky mirror gets a moment).
    pub backoff: Duration,
    /// A connection with no byte for this long is dropped (and resumed).
    pub read_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options { retries: 5, backoff: Duration::from_millis(500), read_timeout: Duration::from_secs(60) }
    }
}

/// The partial file of `dest`.
pub fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// Downloads `url` to `dest` (nothing to do when `dest` exists: verification decides whether it is
/// good). Progress lines go to stderr.
pub fn download(
    url: &str,
    dest: &Path,
    expected_size: Option<u64>,
    options: &Options,
) -> Result<(), DataError> {
    if dest.is_file() {
        return Ok(());
    }
    let part = partial_path(dest);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(options.read_timeout))
        .max_redirects(10)
        .user_agent(concat!("sal-sweep-data/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut last_error = String::new();
    for attempt in 0..=options.retries {
        if attempt > 0 {
            eprintln!("  {url}: {last_error}; retrying ({attempt} of {})", options.retries);
            std::thread::sleep(options.backoff * attempt);
        }
        match attempt_once(&agent, url, &part, expected_size) {
            Ok(()) => {
                std::fs::rename(&part, dest).map_err(|e| DataError::io(dest, e))?;
                return Ok(());
            }
            Err(Failure::Final(error)) => return Err(error),
            Err(Failure::Retry(message)) => last_error = message,
        }
    }
    Err(DataError::Http {
        url: url.to_string(),
        message: format!(
            "{last_error} (gave up after {} attempts; rerun to resume from {})",
            options.retries + 1,
            part.display()
        ),
    })
}

enum Failure {
    Retry(String),
    Final(DataError),
}

fn attempt_once(agent: &ureq::Agent, url: &str, part: &Path, expected: Option<u64>) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::Final(DataError::io(part, e));
    let mut file =
        OpenOptions::new().create(true).truncate(false).read(true).write(true).open(part).map_err(io)?;
    let mut offset = file.metadata().map_err(io)?.len();
    if expected.is_some_and(|size| offset > size) {
        // More than the whole file: not a prefix of it.
        file.set_len(0).map_err(io)?;
        offset = 0;
    }
    if expected == Some(offset) && offset > 0 {
        return Ok(());
    }
    let mut request = agent.get(url);
    if offset > 0 {
        request = request.header("Range", &format!("bytes={offset}-"));
    }
    let response = request.call().map_err(|e| Failure::Retry(e.to_string()))?;
    let status = response.status().as_u16();
    let total = match status {
        206 => {
            let range = response
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range);
            match range {
                Some((start, total)) if start == offset => total,
                _ => {
                    // A range we did not ask for: start over rather than splice wrong bytes.
                    file.set_len(0).map_err(io)?;
                    return Err(Failure::Retry(format!("answered a range other than bytes={offset}-")));
                }
            }
        }
        200 => {
            if offset > 0 {
                eprintln!("  {url}: the server ignores byte ranges; downloading from the start");
                file.set_len(0).map_err(io)?;
                offset = 0;
            }
            response.body().content_length()
        }
        416 if offset > 0 => {
            // Asked past the end: the part file may already be whole (or longer than the file).
            file.set_len(0).map_err(io)?;
            return Err(Failure::Retry("range not satisfiable; starting over".into()));
        }
        500..=599 | 429 => return Err(Failure::Retry(format!("HTTP {status}"))),
        _ => {
            return Err(Failure::Final(DataError::Http {
                url: url.to_string(),
                message: format!("HTTP {status} {}", response.status().canonical_reason().unwrap_or("")),
            }))
        }
    };
    if let (Some(total), Some(expected)) = (total, expected) {
        if total != expected {
            drop(file);
            let _ = std::fs::remove_file(part);
            return Err(Failure::Final(DataError::Http {
                url: url.to_string(),
                message: format!("serves {total} bytes, the catalogue expects {expected}; nothing was kept"),
            }));
        }
    }
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let bar = progress_bar(url, total.or(expected), offset);
    let mut body = response.into_body().into_reader();
    let mut buffer = vec![0u8; 256 << 10];
    let mut written = offset;
    loop {
        let n = match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                file.sync_data().map_err(io)?;
                bar.abandon();
                return Err(Failure::Retry(format!("connection lost after {written} bytes ({e})")));
            }
        };
        file.write_all(&buffer[..n]).map_err(io)?;
        written += n as u64;
        bar.set_position(written);
    }
    file.sync_all().map_err(io)?;
    bar.finish_and_clear();
    if let Some(total) = total.or(expected) {
        if written < total {
            return Err(Failure::Retry(format!("connection closed after {written} of {total} bytes")));
        }
    }
    Ok(())
}

/// `bytes START-END/TOTAL` -> (START, TOTAL).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

fn progress_bar(url: &str, total: Option<u64>, start: u64) -> ProgressBar {
    let name = url.rsplit('/').next().unwrap_or(url).split('?').next().unwrap_or(url).to_string();
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::no_length(),
    };
    if std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("  {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_message(name);
    bar.set_position(start);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse_with_and_without_a_total() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
