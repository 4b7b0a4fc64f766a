//! The catalogue: where each dataset and trunk comes from and how it is verified. The built-in one
//! is `datasets/catalogue.yaml`, compiled in; `--catalogue FILE` adds entries or replaces entries
//! of the same name (an internal mirror that repackaged an archive, a dataset of one's own).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::DataError;

const BUILT_IN: &str = include_str!("../catalogue.yaml");

/// Entries of trunks are named `weights:<architecture>`.
pub const WEIGHTS_PREFIX: &str = "weights:";

/// How the downloaded file is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveKind {
    TarGz,
    Tar,
    Zip,
    /// Not an archive: a weights file.
    File,
}

/// Which converter turns a trunk's published file into this project's `.safetensors` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Converter {
    /// A torchvision state dict (`.pth`): `scripts/convert_torchvision_weights.py --from`.
    Torchvision,
    /// A Keras weights file (`.h5`): `scripts/convert_keras_resnet50v2.py`.
    Keras,
}

/// One dataset or trunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    pub title: String,
    pub url: String,
    /// The file's name on disk, and what `--mirror URL` appends to its URL.
    pub file: String,
    pub archive: ArchiveKind,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub size_source: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub sha256_source: Option<String>,
    #[serde(default)]
    pub md5: Option<String>,
    #[serde(default)]
    pub md5_source: Option<String>,
    #[serde(default)]
    pub md5_first_mib: Option<String>,
    #[serde(default)]
    pub md5_first_mib_source: Option<String>,
    #[serde(default)]
    pub sha256_prefix: Option<String>,
    #[serde(default)]
    pub sha256_prefix_source: Option<String>,
    /// Datasets: the loader's format, the folder under the data root, and the archive's folders
    /// that may become it (the first present wins).
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub root: Option<String>,
    #[serde(default)]
    pub members: Vec<String>,
    /// Datasets: how many images the publisher says it holds, and where that is said; checked
    /// against `common::sizes`, the table the cost estimates read.
    #[serde(default)]
    pub images: Option<u64>,
    #[serde(default)]
    pub images_source: Option<String>,
    /// Trunks: the architecture, the converter and the `.safetensors` file under the data root.
    #[serde(default)]
    pub architecture: Option<String>,
    #[serde(default)]
    pub converter: Option<Converter>,
    #[serde(default)]
    pub output: Option<String>,
    pub licence: String,
    pub homepage: String,
    #[serde(default)]
    pub note: Option<String>,
}

impl Entry {
    pub fn is_weights(&self) -> bool {
        self.name.starts_with(WEIGHTS_PREFIX)
    }

    /// Where the SHA-256 comes from: a publisher, or (none published) the lock file.
    pub fn publishes_sha256(&self) -> bool {
        self.sha256.is_some()
    }

    /// One line: what the archive is checked against, and who says so.
    pub fn checks_summary(&self) -> String {
        let mut parts = Vec::new();
        let mut push = |what: &str, value: &Option<String>, source: &Option<String>| {
            if value.is_some() {
                parts.push(format!("{what} ({})", source.as_deref().unwrap_or("catalogue")));
            }
        };
        push("sha256", &self.sha256, &self.sha256_source);
        push("md5", &self.md5, &self.md5_source);
        push("md5 of the first MiB", &self.md5_first_mib, &self.md5_first_mib_source);
        push("sha256 prefix", &self.sha256_prefix, &self.sha256_prefix_source);
        if self.sha256.is_none() {
            parts.push("sha256 pinned on first download (sal-data.lock)".into());
        }
        parts.join(", ")
    }

    fn validate(&self, file: &str) -> Result<(), DataError> {
        let bad = |message: String| DataError::Catalogue {
            file: file.to_string(),
            message: format!("entry `{}`: {message}", self.name),
        };
        for (field, value, len) in [
            ("sha256", &self.sha256, Some(64)),
            ("md5", &self.md5, Some(32)),
            ("md5_first_mib", &self.md5_first_mib, Some(32)),
            ("sha256_prefix", &self.sha256_prefix, None),
        ] {
            if let Some(value) = value {
                let hex_ok = !value.is_empty() && value.chars().all(|c| c.is_ascii_hexdigit());
                if !hex_ok || len.is_some_and(|len| value.len() != len) || value.len() > 64 {
                    return Err(bad(format!("`{field}` is not a hex digest: `{value}`")));
                }
            }
        }
        if self.file.contains('/') || self.file.is_empty() || self.file.starts_with('.') {
            return Err(bad(format!("`file` must be a plain file name, got `{}`", self.file)));
        }
        if self.is_weights() {
            if self.architecture.is_none() || self.converter.is_none() || self.output.is_none() {
                return Err(bad("a `weights:` entry needs `architecture`, `converter` and `output`".into()));
            }
            if self.archive != ArchiveKind::File {
                return Err(bad("a `weights:` entry is a plain file (`archive: file`)".into()));
            }
        } else {
            let Some(format) = &self.format else {
                return Err(bad("a dataset entry needs `format`".into()));
            };
            common::dataset::Format::parse(format).map_err(|e| bad(e.to_string()))?;
            match &self.root {
                Some(root) if is_plain_relative(root) => {}
                _ => return Err(bad("a dataset entry needs `root`, a relative folder without `..`".into())),
            }
            if self.members.is_empty() || !self.members.iter().all(|m| is_plain_relative(m)) {
                return Err(bad("a dataset entry needs `members`, relative folders without `..`".into()));
            }
            if self.archive == ArchiveKind::File {
                return Err(bad("a dataset entry is an archive (`tar_gz`, `tar` or `zip`)".into()));
            }
        }
        Ok(())
    }
}

fn is_plain_relative(path: &str) -> bool {
    !path.is_empty() && Path::new(path).components().all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// Every entry by name.
#[derive(Debug, Clone)]
pub struct Catalogue {
    entries: BTreeMap<String, Entry>,
}

impl Catalogue {
    /// The compiled-in catalogue.
    pub fn built_in() -> Catalogue {
        // Checked by this module's tests; a broken built-in catalogue cannot ship.
        Catalogue::parse("catalogue.yaml (built in)", BUILT_IN).expect("the built-in catalogue parses")
    }

    pub fn parse(file: &str, text: &str) -> Result<Catalogue, DataError> {
        let list: Vec<Entry> = serde_yaml_ng::from_str(text)
            .map_err(|e| DataError::Catalogue { file: file.to_string(), message: e.to_string() })?;
        let mut entries = BTreeMap::new();
        for entry in list {
            entry.validate(file)?;
            if entries.insert(entry.name.clone(), entry).is_some() {
                return Err(DataError::Catalogue {
                    file: file.to_string(),
                    message: "an entry name appears twice".into(),
                });
            }
        }
        Ok(Catalogue { entries })
    }

    /// The built-in catalogue with `file`'s entries added or replacing those of the same name.
    pub fn with_overrides(mut self, file: &Path) -> Result<Catalogue, DataError> {
        let text = std::fs::read_to_string(file).map_err(|e| DataError::io(file, e))?;
        let extra = Catalogue::parse(&file.display().to_string(), &text)?;
        self.entries.extend(extra.entries);
        Ok(self)
    }

    pub fn get(&self, name: &str) -> Result<&Entry, DataError> {
        self.entries.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.entries.keys().map(String::as_str).collect();
            DataError::entry(name, format!("not in the catalogue (known: {}, or `all`)", known.join(", ")))
        })
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// The entry that produces dataset root `root` or weights file `output`, if any.
    pub fn by_root(&self, root: &str) -> Option<&Entry> {
        self.entries.values().find(|e| e.root.as_deref() == Some(root) || e.output.as_deref() == Some(root))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dataset_s_published_size_is_the_one_the_cost_estimates_read() {
        let mut checked = 0;
        for entry in Catalogue::built_in().entries() {
            let Some(format) = &entry.format else { continue };
            let spec = common::trial::DatasetSpec {
                name: entry.name.clone(),
                format: format.clone(),
                root: entry.root.as_ref().map(std::path::PathBuf::from),
                options: Default::default(),
            };
            let published = common::sizes::published(&spec).map(|p| p.total());
            assert_eq!(published, entry.images, "{}: common::sizes against the catalogue", entry.name);
            assert!(entry.images_source.is_some(), "{}: where its size is published", entry.name);
            checked += 1;
        }
        assert_eq!(checked, 7);
    }

    #[test]
    fn the_built_in_catalogue_covers_every_dataset_and_trunk_of_the_paper_sweep() {
        let catalogue = Catalogue::built_in();
        let sweep: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(include_str!("../../sweeps/paper.yaml")).expect("paper.yaml parses");
        let datasets = sweep["datasets"].as_mapping().expect("datasets");
        assert_eq!(datasets.len(), 7);
        for (name, dataset) in datasets {
            let entry = catalogue.get(name.as_str().expect("a name")).expect("catalogued");
            assert_eq!(entry.root.as_deref(), dataset["root"].as_str(), "{}", entry.name);
            assert_eq!(entry.format.as_deref(), dataset["format"].as_str(), "{}", entry.name);
        }
        let pretrained = sweep["pretrained"].as_mapping().expect("pretrained");
        assert_eq!(pretrained.len(), 6);
        for (architecture, file) in pretrained {
            let architecture = architecture.as_str().expect("a name");
            let entry = catalogue.get(&format!("weights:{architecture}")).expect("catalogued");
            assert_eq!(entry.output.as_deref(), file.as_str());
            assert_eq!(entry.architecture.as_deref(), Some(architecture));
            // torchvision's file names carry the prefix the catalogue checks.
            if let Some(prefix) = &entry.sha256_prefix {
                assert!(entry.file.contains(&format!("-{prefix}.")), "{}", entry.file);
            }
        }
        for entry in catalogue.entries() {
            assert!(entry.url.starts_with("http"), "{}", entry.name);
            assert!(entry.url.contains(entry.file.split('.').next().unwrap_or("")) || entry.name == "pacs");
        }
    }

    #[test]
    fn a_bad_digest_or_an_escaping_root_is_refused_with_the_entry_named() {
        let base = "- name: x\n  title: t\n  url: http://h/x.zip\n  file: x.zip\n  archive: zip\n  format: eurosat\n  licence: l\n  homepage: h\n";
        let error = Catalogue::parse("c.yaml", &format!("{base}  root: ../x\n  members: [a]\n"))
            .expect_err("escaping root");
        assert!(error.to_string().starts_with("c.yaml: entry `x`: a dataset entry needs `root`"), "{error}");
        let error = Catalogue::parse("c.yaml", &format!("{base}  root: x\n  members: [a]\n  sha256: abc\n"))
            .expect_err("short digest");
        assert!(error.to_string().contains("`sha256` is not a hex digest"), "{error}");
        Catalogue::parse("c.yaml", &format!("{base}  root: x\n  members: [a]\n")).expect("valid");
    }
}
