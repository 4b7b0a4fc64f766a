//! Archives unpacked only inside their target. Every member's path is checked before anything is
//! written: `..`, absolute paths and (on any platform) drive prefixes are refused, and so are
//! symbolic and hard links (none of the catalogued archives has one; one pointing outside is
//! called that). Files are created with `create_new`, so nothing already there (a link planted
//! by an earlier member, say) is ever followed. An archive may not inflate past a cap, and a zip
//! member may not inflate past the size its directory declares (a zip bomb's trick).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::catalogue::ArchiveKind;
use crate::error::DataError;

/// Bounds on what one archive may write.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes all members together may inflate to.
    pub max_total_bytes: u64,
}

/// What an extraction wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extracted {
    pub files: u64,
    pub bytes: u64,
}

/// Unpacks `archive` into `into` (an empty folder).
pub fn extract(
    archive: &Path,
    kind: ArchiveKind,
    into: &Path,
    limits: Limits,
) -> Result<Extracted, DataError> {
    let file = std::fs::File::open(archive).map_err(|e| DataError::io(archive, e))?;
    match kind {
        ArchiveKind::TarGz => extract_tar(archive, flate2::read::MultiGzDecoder::new(file), into, limits),
        ArchiveKind::Tar => extract_tar(archive, file, into, limits),
        ArchiveKind::Zip => extract_zip(archive, file, into, limits),
        ArchiveKind::File => Err(DataError::Archive {
            archive: archive.to_path_buf(),
            message: "is a plain file, not an archive".into(),
        }),
    }
}

/// A member's path as a relative path below the target, or why it is refused.
pub fn safe_relative(name: &str) -> Result<PathBuf, String> {
    if name.contains('\0') {
        return Err("has a NUL byte in its name".into());
    }
    // Zip and tar members written on Windows may use backslashes.
    let normalized = name.replace('\\', "/");
    let looks_like_drive = normalized.len() >= 2 && normalized.as_bytes()[1] == b':';
    if normalized.starts_with('/') || looks_like_drive {
        return Err("is an absolute path".into());
    }
    let mut out = PathBuf::new();
    for component in Path::new(&normalized).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("climbs out of the target with `..`".into()),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path".into()),
        }
    }
    if out.as_os_str().is_empty() {
        return Err("has an empty path".into());
    }
    Ok(out)
}

/// Whether link `target`, written in member `member`'s folder, resolves outside the target.
fn link_escapes(member: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return true;
    }
    let mut depth: i64 = member.components().count() as i64 - 1;
    for component in target.components() {
        match component {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return true,
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

struct Writer<'a> {
    archive: &'a Path,
    into: &'a Path,
    limits: Limits,
    done: Extracted,
}

impl Writer<'_> {
    fn refuse(&self, member: &str, message: impl Into<String>) -> DataError {
        DataError::UnsafeMember {
            archive: self.archive.to_path_buf(),
            member: member.to_string(),
            message: message.into(),
        }
    }

    fn directory(&self, relative: &Path) -> Result<(), DataError> {
        let path = self.into.join(relative);
        std::fs::create_dir_all(&path).map_err(|e| DataError::io(&path, e))
    }

    /// Writes one member's bytes, at most `limit` of them (`None`: the archive's remaining cap).
    fn file(
        &mut self,
        member: &str,
        relative: &Path,
        reader: &mut dyn Read,
        limit: Option<u64>,
    ) -> Result<u64, DataError> {
        let path = self.into.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
        }
        let mut out = OpenOptions::new().write(true).create_new(true).open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                self.refuse(member, "appears twice (or over a folder) in the archive")
            } else {
                DataError::io(&path, e)
            }
        })?;
        let remaining = self.limits.max_total_bytes.saturating_sub(self.done.bytes);
        let cap = limit.map_or(remaining, |l| l.min(remaining));
        // One byte past the cap tells "exactly at the cap" from "over it".
        let mut bounded = reader.take(cap + 1);
        let mut buffer = vec![0u8; 256 << 10];
        let mut written = 0u64;
        loop {
            let n = bounded.read(&mut buffer).map_err(|e| DataError::Archive {
                archive: self.archive.to_path_buf(),
                message: format!("member `{member}` cannot be read: {e} (a truncated or damaged archive?)"),
            })?;
            if n == 0 {
                break;
            }
            written += n as u64;
            if written > cap {
                return Err(match limit {
                    Some(declared) if declared <= remaining => self.refuse(
                        member,
                        format!("inflates past the {declared} bytes its header declares (a zip bomb?)"),
                    ),
                    _ => self.refuse(
                        member,
                        format!(
                            "the archive inflates past the {}-byte cap (--max-extract-gib; a zip bomb?)",
                            self.limits.max_total_bytes
                        ),
                    ),
                });
            }
            out.write_all(&buffer[..n]).map_err(|e| DataError::io(&path, e))?;
        }
        self.done.files += 1;
        self.done.bytes += written;
        Ok(written)
    }
}

fn extract_tar(
    archive: &Path,
    reader: impl Read,
    into: &Path,
    limits: Limits,
) -> Result<Extracted, DataError> {
    let mut writer = Writer { archive, into, limits, done: Extracted { files: 0, bytes: 0 } };
    let mut tar = tar::Archive::new(reader);
    let damaged = |e: std::io::Error| DataError::Archive {
        archive: archive.to_path_buf(),
        message: format!("cannot be read as tar: {e} (a truncated or damaged archive?)"),
    };
    for entry in tar.entries().map_err(damaged)? {
        let mut entry = entry.map_err(damaged)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink()
        {
            continue;
        }
        let relative = safe_relative(&name).map_err(|m| writer.refuse(&name, m))?;
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry.link_name().ok().flatten().map(|t| t.into_owned()).unwrap_or_default();
            let what = if kind.is_symlink() { "a symbolic link" } else { "a hard link" };
            // A hard link's target is relative to the archive's root, a symlink's to its folder.
            let escapes = if kind.is_symlink() {
                link_escapes(&relative, &target)
            } else {
                safe_relative(&target.to_string_lossy()).is_err()
            };
            let message = if escapes {
                format!("is {what} to `{}`, outside the target", target.display())
            } else {
                format!("is {what} to `{}`; links are not extracted", target.display())
            };
            return Err(writer.refuse(&name, message));
        }
        if kind.is_dir() {
            writer.directory(&relative)?;
        } else if kind.is_file() || kind.is_contiguous() {
            // The member's size with pax extensions applied (what its data really spans).
            let declared = Some(entry.size());
            writer.file(&name, &relative, &mut entry, declared)?;
        } else {
            return Err(writer.refuse(&name, format!("is a special file ({kind:?}), not extracted")));
        }
    }
    Ok(writer.done)
}

fn extract_zip(
    archive: &Path,
    file: std::fs::File,
    into: &Path,
    limits: Limits,
) -> Result<Extracted, DataError> {
    let damaged = |e: zip::result::ZipError| DataError::Archive {
        archive: archive.to_path_buf(),
        message: format!("cannot be read as zip: {e}"),
    };
    let mut zip = zip::ZipArchive::new(file).map_err(damaged)?;
    let mut writer = Writer { archive, into, limits, done: Extracted { files: 0, bytes: 0 } };
    // The directory's declared sizes first: a bomb that admits its size is refused before it writes.
    let mut declared_total = 0u64;
    for index in 0..zip.len() {
        let member = zip.by_index_raw(index).map_err(damaged)?;
        declared_total = declared_total.saturating_add(member.size());
    }
    if declared_total > limits.max_total_bytes {
        return Err(DataError::Archive {
            archive: archive.to_path_buf(),
            message: format!(
                "declares {declared_total} bytes of members, over the {}-byte cap (--max-extract-gib; a zip bomb?)",
                limits.max_total_bytes
            ),
        });
    }
    for index in 0..zip.len() {
        let mut member = zip.by_index(index).map_err(damaged)?;
        let name = String::from_utf8_lossy(member.name_raw()).into_owned();
        let relative = safe_relative(&name).map_err(|m| writer.refuse(&name, m))?;
        if member.is_symlink() {
            return Err(writer.refuse(&name, "is a symbolic link; links are not extracted"));
        }
        if member.is_dir() {
            writer.directory(&relative)?;
            continue;
        }
        let declared = member.size();
        let written = writer.file(&name, &relative, &mut member, Some(declared))?;
        if written != declared {
            return Err(
                writer.refuse(&name, format!("holds {written} bytes, its header declares {declared}"))
            );
        }
    }
    Ok(writer.done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_that_leave_the_target_are_refused() {
        assert_eq!(safe_relative("a/./b.jpg").as_deref(), Ok(Path::new("a/b.jpg")));
        assert!(safe_relative("a/../../etc/passwd").unwrap_err().contains(".."));
        assert!(safe_relative("/etc/passwd").unwrap_err().contains("absolute"));
        assert!(safe_relative("C:\\Windows\\x").unwrap_err().contains("absolute"));
        assert!(safe_relative("..\\x").unwrap_err().contains(".."));
        assert!(safe_relative("./").is_err());
    }

    #[test]
    fn links_that_climb_above_the_target_escape() {
        assert!(link_escapes(Path::new("a/link"), Path::new("../../x")));
        assert!(link_escapes(Path::new("link"), Path::new("/etc")));
        assert!(!link_escapes(Path::new("a/b/link"), Path::new("../c")));
    }
}
