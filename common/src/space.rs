//! Running out of disk: telling a full filesystem (or an exhausted quota) from other I/O errors,
//! and how much room a folder's filesystem has left. Both binaries treat a full disk as a state
//! to report and wait out, not as a failure to retry.

use std::path::Path;

/// `ENOSPC` (no space left on the device) and `EDQUOT` (disk quota exceeded), as Linux numbers
/// them.
const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;

/// Whether `error` says the filesystem (or the user's quota on it) is full.
pub fn is_out_of_space(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(ENOSPC | EDQUOT))
        || matches!(error.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

/// Whether any error in `error`'s chain of sources is [`is_out_of_space`].
pub fn chain_is_out_of_space(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if is_out_of_space(io) {
                return true;
            }
            // An io::Error that wraps another error hides it from `source`.
            if let Some(inner) = io.get_ref() {
                next = Some(inner);
                continue;
            }
        }
        next = error.source();
    }
    false
}

/// Bytes an unprivileged writer may still write on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a struct the call fills in.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// `12.3 MiB`, `512 KiB`: a size as a person reads it.
pub fn human(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / MIB)
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_or_quota_is_told_apart_from_other_errors() {
        assert!(is_out_of_space(&std::io::Error::from_raw_os_error(ENOSPC)));
        assert!(is_out_of_space(&std::io::Error::from_raw_os_error(EDQUOT)));
        assert!(!is_out_of_space(&std::io::Error::from_raw_os_error(13)));
        let wrapped = std::io::Error::other(std::io::Error::from_raw_os_error(ENOSPC));
        assert!(chain_is_out_of_space(&wrapped));
        assert!(free_bytes(Path::new("/")).is_ok());
        assert_eq!(human(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}
