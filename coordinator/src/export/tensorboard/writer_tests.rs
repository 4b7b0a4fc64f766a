//! The writer's records read back with our own reader ([`record::read_records`] and prost); the
//! read-back with TensorBoard itself is `tests/tests/tensorboard.rs`.

use std::fs;
use std::io;
use std::path::Path;

use prost::Message;

use super::proto::{event, hparams_plugin_data, pb_value, summary, Event, HParamsPluginData, Summary};
use super::*;

fn read_events(path: &Path) -> Vec<Event> {
    let bytes = fs::read(path).unwrap();
    record::read_records(&bytes[..]).unwrap().iter().map(|r| Event::decode(&r[..]).unwrap()).collect()
}

fn summary_of(ev: &Event) -> &Summary {
    match &ev.what {
        Some(event::What::Summary(s)) => s,
        other => panic!("not a summary: {other:?}"),
    }
}

#[test]
fn writes_readable_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(dir.path(), 1_700_000_000.5).unwrap();
    w.scalar("loss", 3, 0.25, 1.0).unwrap();
    w.scalars(4, 2.0, &[("a", 1.5), ("b", -2.0), ("c", f32::MIN_POSITIVE)]).unwrap();
    w.scalars(5, 3.0, &[("a", 7.0)]).unwrap(); // fewer values than the scratch holds
    w.text("notes", 6, "hi *there*", 4.0).unwrap();
    w.hparams_session(&[("lr", HParamValue::Number(0.5)), ("opt", HParamValue::Text("sgd".into()))], 5.0)
        .unwrap();
    w.flush().unwrap();
    assert_eq!(w.bytes(), fs::metadata(w.path()).unwrap().len());

    let name = w.path().file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    assert!(is_event_file(w.path().file_name().unwrap()));

    let evs = read_events(w.path());
    assert_eq!(evs.len(), 6);
    assert_eq!(evs[0].what, Some(event::What::FileVersion("brain.Event:2".into())));
    assert_eq!(evs[0].wall_time, 1_700_000_000.5);

    let s = summary_of(&evs[1]);
    assert_eq!((evs[1].step, evs[1].wall_time), (3, 1.0));
    assert_eq!(s.value[0].tag, "loss");
    assert_eq!(s.value[0].value, Some(summary::value::Value::SimpleValue(0.25)));

    let got: Vec<_> = summary_of(&evs[2]).value.iter().map(|v| (v.tag.as_str(), v.value.clone())).collect();
    let simple = |x| Some(summary::value::Value::SimpleValue(x));
    assert_eq!(got, [("a", simple(1.5)), ("b", simple(-2.0)), ("c", simple(f32::MIN_POSITIVE))]);
    assert_eq!(summary_of(&evs[3]).value.len(), 1);

    let v = &summary_of(&evs[4]).value[0];
    assert_eq!((v.tag.as_str(), evs[4].step), ("notes", 6));
    assert_eq!(v.metadata.as_ref().unwrap().plugin_data.as_ref().unwrap().plugin_name, "text");
    match &v.value {
        Some(summary::value::Value::Tensor(t)) => {
            assert_eq!(t.dtype, proto::DT_STRING);
            assert_eq!(t.string_val, vec![b"hi *there*".to_vec()]);
        }
        other => panic!("{other:?}"),
    }

    let v = &summary_of(&evs[5]).value[0];
    assert_eq!(v.tag, SESSION_START_INFO_TAG);
    let pd = v.metadata.as_ref().unwrap().plugin_data.as_ref().unwrap();
    assert_eq!(pd.plugin_name, "hparams");
    let data = HParamsPluginData::decode(&pd.content[..]).unwrap();
    assert_eq!(data.version, 0);
    match data.data {
        Some(hparams_plugin_data::Data::SessionStartInfo(info)) => {
            assert_eq!(info.hparams["lr"].kind, Some(pb_value::Kind::NumberValue(0.5)));
            assert_eq!(info.hparams["opt"].kind, Some(pb_value::Kind::StringValue("sgd".into())));
            assert_eq!(info.start_time_secs, 5.0);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_corrupted_byte_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(dir.path(), 0.0).unwrap();
    w.scalars(1, 0.0, &[("x", 1.0), ("y", 2.0)]).unwrap();
    w.flush().unwrap();
    let good = fs::read(w.path()).unwrap();
    assert_eq!(record::read_records(&good[..]).unwrap().len(), 2);
    for pos in 0..good.len() {
        let mut bad = good.clone();
        bad[pos] ^= 0x40;
        // The length CRC is checked before the length is trusted, so every flipped byte is a CRC
        // mismatch.
        let err = record::read_records(&bad[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "byte {pos}: {err}");
    }
}

#[test]
fn a_later_file_of_a_run_sorts_after_the_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    // An old data time: the name takes the time of writing, not the data's.
    let paths: Vec<_> =
        (0..12).map(|_| EventWriter::create(dir.path(), 5.0).unwrap().path().to_path_buf()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, paths, "names in creation order, all distinct");
}
