//! Writing one trial's run: all at once (the export) or as its epochs arrive (`--tensorboard`).
//!
//! A run is written into a fresh event file; the event files the run's folder held before (an
//! earlier export, an earlier coordinator's `--tensorboard`) are removed once the new file holds
//! the run and is flushed: TensorBoard reads every file of a run, so a stale one would show every
//! point twice.
//!
//! A step already written is written again only when its value differs. A resumed attempt
//! re-reports the epochs since its checkpoint; the trial is deterministic, so those carry the same
//! numbers, and only their timing differs: the timing (`time/*`) does not count as a difference.
//! Written again, a step would be two points: TensorBoard's EventAccumulator keeps every event of a
//! tag in the order read (no de-duplication by step, and with `file_version` 2 no purge of
//! "orphaned" steps either), so the chart would draw both and the HParams table would take the
//! later one as the metric's last value.
//!
//! Wall time: the start of the trial's first attempt plus the epochs' seconds summed up to the
//! step (the store keeps no wall-clock time per epoch; a resumed attempt's gap is not in it), or
//! the export's time when the trial has no attempt on record. The same reports give the same
//! times, in the export and live.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};

use common::{EpochReport, TrialResult, TrialSpec};

use super::run::{
    epoch_scalars, final_scalars, intervention_text, run_dir, session_hparams, INTERVENTION_TAG,
};
use super::{is_event_file, EventWriter, HParamValue};

/// One trial's run, and what was written of it.
pub(super) struct RunFile {
    pub(super) dir: PathBuf,
    /// The trial's first attempt's start, s since the epoch.
    start: f64,
    learning_rate: f64,
    hparams: Vec<(&'static str, HParamValue)>,
    writer: Option<EventWriter>,
    /// Whether this process has made a file of the run yet (the first holds the hparams).
    made: bool,
    /// The run's event files from before this process wrote it, removed at the next flush.
    stale: Vec<PathBuf>,
    /// What each step holds, as a fingerprint of its values.
    written: BTreeMap<u32, u64>,
    /// Each epoch's seconds, for the wall time.
    seconds: BTreeMap<u32, f64>,
    final_written: Option<(u32, u64)>,
    /// Files made, and the bytes of those closed.
    pub(super) files: usize,
    pub(super) bytes: u64,
}

impl RunFile {
    pub(super) fn new(logdir: &Path, id: &str, spec: &TrialSpec, start: f64) -> Self {
        Self {
            dir: logdir.join(run_dir(id, spec)),
            start,
            learning_rate: spec.learning_rate,
            hparams: session_hparams(spec),
            writer: None,
            made: false,
            stale: Vec::new(),
            written: BTreeMap::new(),
            seconds: BTreeMap::new(),
            final_written: None,
            files: 0,
            bytes: 0,
        }
    }

    /// Writes one epoch report: its scalars and SAL's intervention at step = epoch, unless the
    /// step already holds the same values.
    pub(super) fn epoch(&mut self, report: &EpochReport) -> io::Result<()> {
        let scalars = epoch_scalars(report, self.learning_rate);
        let text = report.sal.as_ref().and_then(intervention_text);
        self.seconds.insert(report.epoch, report.seconds);
        let print = fingerprint(scalars.iter().filter(|(tag, _)| !tag.starts_with("time/")), text.as_deref());
        if self.written.get(&report.epoch) == Some(&print) {
            return Ok(());
        }
        let (step, wall) = (i64::from(report.epoch), self.wall(report.epoch));
        let writer = self.writer()?;
        writer.scalars(step, wall, &scalars)?;
        if let Some(text) = text {
            writer.text(INTERVENTION_TAG, step, &text, wall)?;
        }
        self.written.insert(report.epoch, print);
        Ok(())
    }

    /// Writes a final result: its history's epochs not written yet (or changed), then the final
    /// metrics at the last epoch's step.
    pub(super) fn result(&mut self, result: &TrialResult) -> io::Result<()> {
        for report in &result.history {
            self.epoch(report)?;
        }
        self.final_metrics(result)
    }

    /// The final metrics, at the last epoch's step (of the result's history, else of what was
    /// written).
    pub(super) fn final_metrics(&mut self, result: &TrialResult) -> io::Result<()> {
        let step = result
            .history
            .last()
            .map(|r| r.epoch)
            .or_else(|| self.written.keys().next_back().copied())
            .unwrap_or(0);
        let scalars = final_scalars(result);
        let print = (step, fingerprint(scalars.iter(), None));
        if self.final_written == Some(print) {
            return Ok(());
        }
        let wall = self.wall(step);
        self.writer()?.scalars(i64::from(step), wall, &scalars)?;
        self.final_written = Some(print);
        Ok(())
    }

    /// Flushes the open file, then removes the run's stale files.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        if let Some(writer) = &mut self.writer {
            writer.flush()?;
        }
        for path in self.stale.drain(..) {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Flushes and closes the open file; more data later goes into a new file of the run.
    pub(super) fn close(&mut self) -> io::Result<()> {
        self.flush()?;
        if let Some(writer) = self.writer.take() {
            self.bytes += writer.bytes();
        }
        Ok(())
    }

    pub(super) fn is_open(&self) -> bool {
        self.writer.is_some()
    }

    fn wall(&self, epoch: u32) -> f64 {
        self.start + self.seconds.range(..=epoch).map(|(_, s)| s).sum::<f64>()
    }

    /// The open file, or a new one: the first of this process starts with the hparams and marks
    /// the files already there as stale.
    fn writer(&mut self) -> io::Result<&mut EventWriter> {
        if self.writer.is_none() {
            let mut writer = EventWriter::create(&self.dir, self.start)?;
            self.files += 1;
            if !self.made {
                self.made = true;
                self.stale = event_files(&self.dir, writer.path())?;
                writer.hparams_session(&self.hparams, self.start)?;
            }
            self.writer = Some(writer);
        }
        Ok(self.writer.as_mut().expect("just made"))
    }
}

/// The event files in `dir` other than `except`.
pub(super) fn event_files(dir: &Path, except: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if is_event_file(&entry.file_name()) && entry.path() != except && entry.file_type()?.is_file() {
            found.push(entry.path());
        }
    }
    Ok(found)
}

fn fingerprint<'a>(scalars: impl Iterator<Item = &'a (&'static str, f32)>, text: Option<&str>) -> u64 {
    let mut hasher = DefaultHasher::new();
    for (tag, value) in scalars {
        (tag, value.to_bits()).hash(&mut hasher);
    }
    text.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::super::proto::{event, summary, Event};
    use super::super::record::read_records;
    use super::*;

    fn spec() -> TrialSpec {
        serde_json::from_value(serde_json::json!({
            "architecture": "small_cnn", "optimizer": "adam", "resolution": 16, "method": "baseline",
            "epochs": 3, "batch_size": 8, "learning_rate": 0.5, "seed": 1,
            "dataset": {"name": "s", "format": "synthetic"},
        }))
        .unwrap()
    }

    fn report(epoch: u32, loss: f64, seconds: f64) -> EpochReport {
        EpochReport {
            epoch,
            train_loss: loss,
            train_accuracy: 0.5,
            val_loss: loss,
            val_accuracy: 0.5,
            grad_norm: 1.0,
            sal: None,
            seconds,
            peak_device_mb: None,
            train_images_per_s: 10.0,
            eval_images_per_s: 0.0,
        }
    }

    /// (step, wall time, train/loss) of every scalar event of the run's files, in file order.
    fn losses(dir: &Path) -> Vec<(i64, f64, f32)> {
        let mut files = event_files(dir, Path::new("")).unwrap();
        files.sort();
        let mut found = Vec::new();
        for file in files {
            for record in read_records(&fs::read(file).unwrap()[..]).unwrap() {
                let event = Event::decode(&record[..]).unwrap();
                let Some(event::What::Summary(summary)) = event.what else { continue };
                for value in summary.value.iter().filter(|v| v.tag == "train/loss") {
                    if let Some(summary::value::Value::SimpleValue(x)) = value.value {
                        found.push((event.step, event.wall_time, x));
                    }
                }
            }
        }
        found
    }

    #[test]
    fn a_step_is_written_again_only_when_its_numbers_differ() {
        let logdir = tempfile::tempdir().unwrap();
        let mut run = RunFile::new(logdir.path(), "abc", &spec(), 100.0);
        for epoch in 1..=3 {
            run.epoch(&report(epoch, 1.0 / f64::from(epoch), 2.0)).unwrap();
        }
        // A resumed attempt: epoch 2 again, the same numbers in another time; then a changed one.
        run.epoch(&report(2, 0.5, 9.0)).unwrap();
        run.epoch(&report(3, 0.25, 2.0)).unwrap();
        run.close().unwrap();
        // Wall time: the start plus the epochs' seconds so far (epoch 2's latest: 9 s).
        assert_eq!(
            losses(&run.dir),
            [(1, 102.0, 1.0), (2, 104.0, 0.5), (3, 106.0, 1.0 / 3.0), (3, 113.0, 0.25)]
        );
        assert_eq!(
            (run.files, run.bytes),
            (1, fs::metadata(&event_files(&run.dir, Path::new("")).unwrap()[0]).unwrap().len())
        );
    }

    #[test]
    fn a_run_written_again_replaces_its_files_and_more_data_after_a_close_goes_into_a_new_one() {
        let logdir = tempfile::tempdir().unwrap();
        let mut first = RunFile::new(logdir.path(), "abc", &spec(), 0.0);
        first.epoch(&report(1, 1.0, 1.0)).unwrap();
        first.close().unwrap();
        std::fs::write(first.dir.join("notes.txt"), "not an event file").unwrap();

        let mut again = RunFile::new(logdir.path(), "abc", &spec(), 0.0);
        again.epoch(&report(1, 1.0, 1.0)).unwrap();
        again.flush().unwrap();
        assert_eq!(losses(&again.dir), [(1, 1.0, 1.0)], "the earlier file is gone");
        again.close().unwrap();
        again.epoch(&report(2, 0.5, 1.0)).unwrap();
        again.close().unwrap();
        assert_eq!(losses(&again.dir), [(1, 1.0, 1.0), (2, 2.0, 0.5)]);
        assert_eq!(again.files, 2);
        assert!(again.dir.join("notes.txt").is_file());
    }
}
