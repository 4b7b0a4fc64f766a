//! TensorBoard event files: a small writer (no TensorFlow, no `tensorboard-rs`, which has had no
//! release since 2022), what a trial's run holds, `coordinator export tensorboard`, and
//! `--tensorboard DIR`, which writes them while a sweep runs.
//!
//! The writer, here: [`EventWriter`] writes scalars (`simple_value`), text (the text plugin) and
//! the HParams plugin's records in the on-disk form of TensorBoard's own Python writers; [`proto`]
//! holds the hand-written prost messages, [`record`] the TFRecord framing with masked CRC32C,
//! [`hparams`] the HParams vocabulary. The files are checked by reading them back with the
//! `tensorboard` package's own EventAccumulator (`tests/tests/tensorboard.rs`,
//! `scripts/tensorboard_readback.py`).
//!
//! What TensorBoard expects of the layout:
//! * every directory holding an `*tfevents*` file is a *run*, named by its path relative to the
//!   logdir (the logdir itself is the run `"."`); it reads every file of a run, in name order,
//!   and once it has moved on to a newer file it never reads an older one again;
//! * for the HParams dashboard each trial is its own run with one `session_start_info` and its
//!   metric scalars (a metric is a scalar tag of the session's own run: `MetricName.group` "");
//! * one experiment record, written once (by convention in the logdir itself), declares the
//!   hparam columns and metrics; without one, TensorBoard infers them by scanning every run.
//!
//! [`run`] is what a trial's run holds; [`export`] writes a state dir's sweep; [`follow`] tails a
//! running sweep's store.

mod export;
mod follow;
pub mod hparams;
pub mod proto;
pub mod record;
pub mod run;
mod run_file;
#[cfg(test)]
mod writer_tests;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

pub use export::{check_out_dir, export, ExportError, ExportSummary};
pub use follow::{follow, FollowSummary, Following};
pub use hparams::{HParamDomain, HParamInfo, HParamValue};
use proto::{event, hparams_plugin_data, summary, Event, HParamsPluginData, PluginData, Summary};
use proto::{SummaryMetadata, TensorProto, TensorShapeProto};

/// `file_version` of the first event of every file. Version 2 tells readers not to purge
/// "orphaned" data when a step goes backwards (only an explicit `SessionLog.START` does).
pub const FILE_VERSION: &str = "brain.Event:2";
/// Plugin name of the HParams dashboard (`hparams/metadata.py: PLUGIN_NAME`).
pub const HPARAMS_PLUGIN: &str = "hparams";
/// Tag of the experiment summary (`hparams/metadata.py: EXPERIMENT_TAG`).
pub const EXPERIMENT_TAG: &str = "_hparams_/experiment";
/// Tag of a session's hparams (`hparams/metadata.py: SESSION_START_INFO_TAG`).
pub const SESSION_START_INFO_TAG: &str = "_hparams_/session_start_info";
/// Plugin name of the text dashboard (`text/metadata.py: PLUGIN_NAME`).
pub const TEXT_PLUGIN: &str = "text";
/// What every event file's name holds (TensorBoard globs for it).
pub const EVENT_FILE_MARK: &str = "tfevents";

/// Buffer size of each file: large enough that a typical run is one write.
const BUF_CAPACITY: usize = 64 * 1024;

/// Writes one TensorBoard event file.
///
/// Records are buffered; call [`flush`](Self::flush) when done (dropping the writer also flushes,
/// but swallows errors). Nothing is fsynced: an export can be written again.
pub struct EventWriter {
    file: BufWriter<File>,
    path: PathBuf,
    /// Bytes of records written (flushed or not).
    bytes: u64,
    /// Reused encode buffer for one serialized `Event`.
    buf: Vec<u8>,
    /// Reused `Summary` for [`scalars`](Self::scalars): keeps the tags' allocations.
    scratch: Summary,
}

impl EventWriter {
    /// Creates `dir` (and parents) and in it `events.out.tfevents.{now:010}.{host}.{pid}.{n:06}`,
    /// then writes the first event, `file_version = "brain.Event:2"`, at `wall_time`.
    ///
    /// The name holds the time of writing (as TensorBoard's Python writer does), not
    /// `wall_time`: a file written later sorts after the files already there, so a TensorBoard
    /// that is watching moves on to it. `n` counts this process's files, zero-padded for the
    /// same reason.
    pub fn create(dir: &Path, wall_time: f64) -> io::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        fs::create_dir_all(dir)?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let name =
            format!("events.out.{EVENT_FILE_MARK}.{now:010}.{}.{}.{n:06}", hostname(), std::process::id());
        let path = dir.join(name);
        let file = OpenOptions::new().write(true).create_new(true).open(&path)?;
        let mut w = Self {
            file: BufWriter::with_capacity(BUF_CAPACITY, file),
            path,
            bytes: 0,
            buf: Vec::with_capacity(1024),
            scratch: Summary::default(),
        };
        w.write_event(&Event {
            wall_time,
            step: 0,
            what: Some(event::What::FileVersion(FILE_VERSION.to_owned())),
        })?;
        Ok(w)
    }

    /// The path of the event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written to the file so far (once flushed).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes one scalar as `Summary.Value.simple_value`.
    pub fn scalar(&mut self, tag: &str, step: i64, value: f32, wall_time: f64) -> io::Result<()> {
        self.scalars(step, wall_time, &[(tag, value)])
    }

    /// Writes several scalars of one step as a single `Event` (one record).
    pub fn scalars(&mut self, step: i64, wall_time: f64, values: &[(&str, f32)]) -> io::Result<()> {
        let mut summary = std::mem::take(&mut self.scratch);
        summary.value.truncate(values.len());
        for (i, &(tag, v)) in values.iter().enumerate() {
            if i == summary.value.len() {
                summary.value.push(summary::Value::default());
            }
            let slot = &mut summary.value[i];
            slot.tag.clear();
            slot.tag.push_str(tag);
            slot.value = Some(summary::value::Value::SimpleValue(v));
        }
        let mut ev = Event { wall_time, step, what: Some(event::What::Summary(summary)) };
        let result = self.write_event(&ev);
        if let Some(event::What::Summary(s)) = ev.what.take() {
            self.scratch = s;
        }
        result
    }

    /// Writes a text summary for the text dashboard: a scalar `DT_STRING` tensor
    /// (`string_val = [text]`) with `plugin_name = "text"`, as
    /// `tensorboard/plugins/text/summary_v2.py: text_pb` does (the content, a
    /// `TextPluginData { version: 0 }`, serializes to zero bytes). The dashboard renders Markdown.
    pub fn text(&mut self, tag: &str, step: i64, text: &str, wall_time: f64) -> io::Result<()> {
        let tensor = TensorProto {
            dtype: proto::DT_STRING,
            tensor_shape: Some(TensorShapeProto::default()), // rank 0
            float_val: Vec::new(),
            string_val: vec![text.as_bytes().to_vec()],
        };
        self.write_plugin_value(tag, step, wall_time, TEXT_PLUGIN, Vec::new(), tensor)
    }

    /// Writes this run's hyperparameters (`SessionStartInfo`, tag `_hparams_/session_start_info`,
    /// at step 0) for the HParams dashboard. `group_name` is left empty, so each run is its own
    /// session group; `start_time_secs` is `wall_time`.
    pub fn hparams_session(&mut self, hparams: &[(&str, HParamValue)], wall_time: f64) -> io::Result<()> {
        let info = proto::SessionStartInfo {
            hparams: hparams.iter().map(|(k, v)| ((*k).to_owned(), v.to_pb())).collect::<BTreeMap<_, _>>(),
            group_name: String::new(),
            start_time_secs: wall_time,
        };
        self.write_hparams(
            SESSION_START_INFO_TAG,
            wall_time,
            hparams_plugin_data::Data::SessionStartInfo(info),
        )
    }

    /// Writes the experiment summary (tag `_hparams_/experiment`): the hyperparameter columns and
    /// the metric tags (`MetricName { group: "", tag }`: scalars in each session's own run), in
    /// the order the dashboard shows them. Write it once, in a writer on the logdir itself.
    pub fn hparams_experiment(
        &mut self,
        hparams: &[HParamInfo],
        metrics: &[&str],
        wall_time: f64,
    ) -> io::Result<()> {
        let experiment = proto::Experiment {
            time_created_secs: wall_time,
            hparam_infos: hparams.iter().map(HParamInfo::to_pb).collect(),
            metric_infos: metrics
                .iter()
                .map(|tag| proto::MetricInfo {
                    name: Some(proto::MetricName { group: String::new(), tag: (*tag).to_owned() }),
                })
                .collect(),
        };
        self.write_hparams(EXPERIMENT_TAG, wall_time, hparams_plugin_data::Data::Experiment(experiment))
    }

    /// Flushes buffered records to the file (no fsync).
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    /// Hparams summaries: the payload is a serialized `HParamsPluginData` (version 0: the plugin
    /// rejects any other) in `SummaryMetadata.plugin_data.content`, and the value's tensor is a
    /// placeholder, an empty `DT_FLOAT` tensor of shape `[0]` (`hparams/metadata.py:
    /// NULL_TENSOR`), as `summary_v2.py: _summary_pb` writes it.
    fn write_hparams(
        &mut self,
        tag: &str,
        wall_time: f64,
        data: hparams_plugin_data::Data,
    ) -> io::Result<()> {
        let content = HParamsPluginData { version: 0, data: Some(data) }.encode_to_vec();
        let null_tensor = TensorProto {
            dtype: proto::DT_FLOAT,
            tensor_shape: Some(TensorShapeProto { dim: vec![proto::Dim { size: 0 }] }),
            float_val: Vec::new(),
            string_val: Vec::new(),
        };
        self.write_plugin_value(tag, 0, wall_time, HPARAMS_PLUGIN, content, null_tensor)
    }

    fn write_plugin_value(
        &mut self,
        tag: &str,
        step: i64,
        wall_time: f64,
        plugin_name: &str,
        content: Vec<u8>,
        tensor: TensorProto,
    ) -> io::Result<()> {
        let value = summary::Value {
            tag: tag.to_owned(),
            metadata: Some(SummaryMetadata {
                plugin_data: Some(PluginData { plugin_name: plugin_name.to_owned(), content }),
                display_name: String::new(),
                summary_description: String::new(),
            }),
            value: Some(summary::value::Value::Tensor(tensor)),
        };
        self.write_event(&Event {
            wall_time,
            step,
            what: Some(event::What::Summary(Summary { value: vec![value] })),
        })
    }

    fn write_event(&mut self, ev: &Event) -> io::Result<()> {
        self.buf.clear();
        ev.encode(&mut self.buf).map_err(io::Error::other)?;
        record::write_record(&mut self.file, &self.buf)?;
        self.bytes += record::framed_len(self.buf.len());
        Ok(())
    }
}

/// Whether `name` is the name of an event file.
pub fn is_event_file(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|name| name.contains(EVENT_FILE_MARK))
}

/// The host name for file names (read once), as one glob-safe path component.
fn hostname() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let raw = fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| fs::read_to_string("/etc/hostname"))
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_default();
        let clean: String = raw
            .trim()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .collect();
        if clean.is_empty() {
            "localhost".to_owned()
        } else {
            clean
        }
    })
}
