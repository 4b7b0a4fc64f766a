//! `sal-data fetch` against a real HTTP server on loopback, with archives built in each dataset's
//! real format: every dataset laid out as the loader reads it, idempotent reruns, resumed
//! downloads, and every refusal (checksum, `..`, links, zip bombs, interrupted extraction) leaving
//! nothing published.

mod common;

use std::path::Path;

use common::*;

struct Fixture {
    name: &'static str,
    file: &'static str,
    archive: &'static str,
    format: &'static str,
    root: &'static str,
    member: &'static str,
    bytes: Vec<u8>,
}

fn fixtures() -> Vec<Fixture> {
    let f = |name, file, archive, format, root, member, bytes| Fixture {
        name,
        file,
        archive,
        format,
        root,
        member,
        bytes,
    };
    vec![
        f(
            "imagenette",
            "imagenette2.tgz",
            "tar_gz",
            "imagenette",
            "imagenette2",
            "imagenette2",
            imagenette_archive("imagenette2"),
        ),
        f(
            "imagewoof2",
            "imagewoof2.tgz",
            "tar_gz",
            "imagenette",
            "imagewoof2",
            "imagewoof2",
            imagenette_archive("imagewoof2"),
        ),
        f(
            "tiny_imagenet",
            "tiny-imagenet-200.zip",
            "zip",
            "tiny_imagenet",
            "tiny-imagenet-200",
            "tiny-imagenet-200",
            tiny_imagenet_archive(),
        ),
        f("eurosat_rgb", "EuroSAT.zip", "zip", "eurosat", "EuroSAT_RGB", "2750", eurosat_archive()),
        f("pacs", "PACS.zip", "zip", "pacs", "PACS", "kfold", pacs_archive()),
        f(
            "cifar10",
            "cifar-10-binary.tar.gz",
            "tar_gz",
            "cifar10_bin",
            "cifar-10-batches-bin",
            "cifar-10-batches-bin",
            cifar_archive(3),
        ),
        f("corel1k", "test1.tar", "tar", "corel1k", "corel1k", "image.orig", corel_archive(1)),
    ]
}

const PAPER_DATASETS: &str = "datasets:
  imagenette: {format: imagenette, root: imagenette2}
  imagewoof2: {format: imagenette, root: imagewoof2}
  tiny_imagenet: {format: tiny_imagenet, root: tiny-imagenet-200}
  eurosat_rgb: {format: eurosat, root: EuroSAT_RGB}
  pacs: {format: pacs, root: PACS}
  cifar10: {format: cifar10_bin, root: cifar-10-batches-bin}
  corel1k: {format: corel1k, root: corel1k}
";

#[test]
fn every_paper_dataset_is_fetched_through_a_mirror_laid_out_for_its_loader_and_a_rerun_does_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start();
    let mut catalogue = String::new();
    for f in fixtures() {
        // The first file comes slowly: a progress bar's worth of time, the same bytes.
        let served = Served { bytes: f.bytes.clone(), slow: f.name == "imagenette", ..Served::default() };
        server.add(&format!("/mirror/{}", f.file), served);
        catalogue.push_str(&dataset_entry(
            f.name,
            f.file,
            f.archive,
            Some(&sha256(&f.bytes)),
            f.format,
            f.root,
            f.member,
        ));
    }
    let catalogue_file = write(&dir.path().join("catalogue.yaml"), catalogue.as_bytes());
    let root = dir.path().join("data");
    let mirror = format!("{}/mirror", server.base);
    let names = ["imagenette", "imagewoof2", "tiny_imagenet", "eurosat_rgb", "pacs", "cifar10", "corel1k"];
    let mut args = vec!["fetch"];
    args.extend(names);
    let (root_arg, catalogue_arg) = (root.display().to_string(), catalogue_file.display().to_string());
    args.extend(["--to", &root_arg, "--mirror", &mirror, "--catalogue", &catalogue_arg]);
    let first = sal_data(&args);
    assert!(first.status.success(), "{}", text(&first));
    for name in names {
        assert!(text(&first).contains(&format!("{name}: verified (sha256")), "{name}: {}", text(&first));
    }

    // The loaders' layouts, as the worker reads them.
    for path in [
        "imagenette2/train/n01440764/a.JPEG",
        "imagenette2/val/n02102040/d.JPEG",
        "imagewoof2/val/n01440764/d.JPEG",
        "tiny-imagenet-200/wnids.txt",
        "tiny-imagenet-200/val/val_annotations.txt",
        "tiny-imagenet-200/train/n01443537/images/n01443537_0.JPEG",
        "EuroSAT_RGB/Forest/Forest_2.jpg",
        "PACS/sketch/horse/2.jpg",
        "cifar-10-batches-bin/data_batch_5.bin",
        "cifar-10-batches-bin/batches.meta.txt",
        "corel1k/101.jpg",
    ] {
        assert!(root.join(path).is_file(), "{path} missing: {:?}", tree(&root));
    }
    // Nothing half-done stays behind, and the archives are gone once published.
    let work = tree(&root.join(".sal-fetch"));
    assert_eq!(work, ["downloads", "fetch.lock"], "nothing but the empty downloads folder and the lock");
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("sal-data.lock")).expect("lock"))
            .expect("json");
    for f in fixtures() {
        assert_eq!(lock[f.name]["sha256"], sha256(&f.bytes), "{}", f.name);
        assert!(lock[f.name]["url"].as_str().is_some_and(|u| u.starts_with(&mirror)));
    }

    let sweep = write(&dir.path().join("sweep.yaml"), PAPER_DATASETS.as_bytes());
    let check = sal_data(&["check", "--sweep", &sweep.display().to_string(), "--data-root", &root_arg]);
    assert!(check.status.success(), "{}", text(&check));
    let table = text(&check);
    // EuroSAT: 3 classes of 3, one of each to validation; Tiny ImageNet: 4 train, 2 val.
    // Status, classes, train, val, unreadable; EuroSAT: 3 classes of 3, one of each to validation.
    assert_eq!(row(&table, "eurosat_rgb")[3..], ["ok", "3", "6", "3", "0"], "{table}");
    assert_eq!(row(&table, "tiny_imagenet")[3..], ["ok", "2", "4", "2", "0"], "{table}");
    assert_eq!(row(&table, "cifar10")[3..], ["ok", "10", "15", "3", "0"], "{table}");
    assert_eq!(row(&table, "pacs")[3..], ["ok", "2", "12", "4", "0"], "{table}");
    assert_eq!(row(&table, "corel1k")[3..], ["ok", "2", "4", "2", "0"], "{table}");

    let requests = server.seen().len();
    let second = sal_data(&args);
    assert!(second.status.success(), "{}", text(&second));
    for name in names {
        assert!(
            text(&second).contains(&format!("{name}: already fetched and verified")),
            "{}",
            text(&second)
        );
    }
    assert_eq!(server.seen().len(), requests, "a rerun downloads nothing");
}

fn one(
    dir: &Path,
    server: &Server,
    fixture: &Fixture,
    sha: Option<&str>,
    served: Served,
) -> (String, String) {
    let url = server.add(&format!("/{}", fixture.file), served);
    let mut entry = dataset_entry(
        fixture.name,
        fixture.file,
        fixture.archive,
        sha,
        fixture.format,
        fixture.root,
        fixture.member,
    );
    entry = entry.replace(&format!("http://127.0.0.1:9/unused/{}", fixture.file), &url);
    let catalogue = write(&dir.join("catalogue.yaml"), entry.as_bytes());
    (dir.join("data").display().to_string(), catalogue.display().to_string())
}

fn fixture(name: &str) -> Fixture {
    fixtures().into_iter().find(|f| f.name == name).expect("fixture")
}

#[test]
fn a_checksum_mismatch_is_refused_and_nothing_is_published() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start();
    let f = fixture("cifar10");
    let wrong = sha256(b"another archive");
    let (root, catalogue) =
        one(dir.path(), &server, &f, Some(&wrong), Served { bytes: f.bytes.clone(), ..Served::default() });
    let out = sal_data(&["fetch", "cifar10", "--to", &root, "--catalogue", &catalogue]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let message = text(&out);
    assert!(
        message.contains(&format!("sha256 is {}, expected {wrong} (the test)", sha256(&f.bytes))),
        "{message}"
    );
    assert!(message.contains("nothing was extracted"), "{message}");
    let root = Path::new(&root);
    assert!(!root.join("cifar-10-batches-bin").exists());
    assert!(!root.join("sal-data.lock").exists(), "a refused file is not pinned");
    assert!(
        !root.join(".sal-fetch/downloads/cifar-10-binary.tar.gz").exists(),
        "the bad download is removed"
    );
}

#[test]
fn a_connection_dropped_mid_file_is_resumed_with_a_range_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start();
    let f = fixture("eurosat_rgb");
    let half = f.bytes.len() / 2;
    let served = Served { bytes: f.bytes.clone(), drop_after: Some(half), ..Served::default() };
    let (root, catalogue) = one(dir.path(), &server, &f, Some(&sha256(&f.bytes)), served);
    let out = sal_data(&["fetch", "eurosat_rgb", "--to", &root, "--catalogue", &catalogue]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("connection lost after {half} bytes"))
            || text(&out).contains("connection closed after"),
        "{}",
        text(&out)
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].range_start, None);
    assert_eq!(seen[1].range_start, Some(half as u64), "the retry asks for the rest only");
    assert!(Path::new(&root).join("EuroSAT_RGB/River/River_3.jpg").is_file());
}

#[test]
fn a_stalled_connection_times_out_and_is_resumed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start();
    let f = fixture("tiny_imagenet");
    let stall = f.bytes.len() / 4;
    let served = Served { bytes: f.bytes.clone(), stall_after: Some(stall), ..Served::default() };
    let (root, catalogue) = one(dir.path(), &server, &f, Some(&sha256(&f.bytes)), served);
    let out = sal_data(&[
        "fetch",
        "tiny_imagenet",
        "--to",
        &root,
        "--catalogue",
        &catalogue,
        "--read-timeout",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("connection lost after {stall} bytes")), "{}", text(&out));
    assert_eq!(
        server.seen().iter().map(|s| s.range_start).collect::<Vec<_>>(),
        vec![None, Some(stall as u64)]
    );
    assert!(Path::new(&root).join("tiny-imagenet-200/val/images/val_1.JPEG").is_file());
}

#[test]
fn a_partial_download_left_by_an_earlier_run_is_resumed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start();
    let f = fixture("corel1k");
    let (root, catalogue) = one(
        dir.path(),
        &server,
        &f,
        Some(&sha256(&f.bytes)),
        Served { bytes: f.bytes.clone(), ..Served::default() },
    );
    let third = f.bytes.len() / 3;
    write(&Path::new(&root).join(".sal-fetch/downloads/test1.tar.part"), &f.bytes[..third]);
    let out = sal_data(&["fetch", "corel1k", "--to", &root, "--catalogue", &catalogue]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("resuming {}/test1.tar at byte {third}", server.base)),
        "{}",
        text(&out)
    );
    assert_eq!(server.seen().iter().map(|s| s.range_start).collect::<Vec<_>>(), vec![Some(third as u64)]);
    assert!(Path::new(&root).join("corel1k/102.jpg").is_file());
}

fn refused(name: &str, bytes: Vec<u8>, extra: &[&str]) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start();
    let mut f = fixture(name);
    f.bytes = bytes;
    let (root, catalogue) = one(
        dir.path(),
        &server,
        &f,
        Some(&sha256(&f.bytes)),
        Served { bytes: f.bytes.clone(), ..Served::default() },
    );
    let mut args = vec!["fetch", name, "--to", &root, "--catalogue", &catalogue];
    args.extend(extra);
    let out = sal_data(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!Path::new(&root).join(f.root).exists(), "nothing published: {:?}", tree(Path::new(&root)));
    (text(&out), dir)
}

fn raw_tar_member(
    builder: &mut tar::Builder<Vec<u8>>,
    name: &[u8],
    kind: tar::EntryType,
    link: Option<&str>,
    data: &[u8],
) {
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().expect("gnu header").name[..name.len()].copy_from_slice(name);
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    if let Some(link) = link {
        header.set_link_name(link).expect("link name");
    }
    header.set_cksum();
    builder.append(&header, data).expect("append");
}

#[test]
fn a_tar_member_climbing_out_with_dotdot_is_refused() {
    let mut builder = tar::Builder::new(Vec::new());
    raw_tar_member(&mut builder, b"image.orig/0.jpg", tar::EntryType::Regular, None, &jpeg(1));
    raw_tar_member(&mut builder, b"image.orig/../../evil.txt", tar::EntryType::Regular, None, b"owned");
    let (message, dir) = refused("corel1k", builder.into_inner().expect("tar"), &[]);
    assert!(
        message.contains("member `image.orig/../../evil.txt`: climbs out of the target with `..`"),
        "{message}"
    );
    assert!(!dir.path().join("evil.txt").exists() && !dir.path().join("data/evil.txt").exists());
}

#[test]
fn a_symbolic_link_pointing_out_of_the_target_is_refused() {
    let mut builder = tar::Builder::new(Vec::new());
    raw_tar_member(&mut builder, b"image.orig/0.jpg", tar::EntryType::Regular, None, &jpeg(1));
    raw_tar_member(
        &mut builder,
        b"image.orig/1.jpg",
        tar::EntryType::Symlink,
        Some("../../../etc/passwd"),
        b"",
    );
    let (message, _dir) = refused("corel1k", builder.into_inner().expect("tar"), &[]);
    assert!(
        message.contains(
            "member `image.orig/1.jpg`: is a symbolic link to `../../../etc/passwd`, outside the target"
        ),
        "{message}"
    );
}

#[test]
fn a_hard_link_pointing_out_of_the_target_is_refused() {
    let mut builder = tar::Builder::new(Vec::new());
    raw_tar_member(&mut builder, b"image.orig/0.jpg", tar::EntryType::Link, Some("/etc/shadow"), b"");
    let (message, _dir) = refused("corel1k", builder.into_inner().expect("tar"), &[]);
    assert!(message.contains("is a hard link to `/etc/shadow`, outside the target"), "{message}");
}

/// Rewrites every size field of a zip's member `name` (local header and central directory) to
/// `declared`, leaving its data as it is: a member that inflates past what it admits.
fn lie_about_size(mut zip: Vec<u8>, name: &str, declared: u32) -> Vec<u8> {
    let mut patched = 0;
    for offset in 0..zip.len().saturating_sub(46) {
        let signature = &zip[offset..offset + 4];
        let (size_at, name_len_at, name_at) = match signature {
            [0x50, 0x4b, 0x03, 0x04] => (22, 26, 30),
            [0x50, 0x4b, 0x01, 0x02] => (24, 28, 46),
            _ => continue,
        };
        let name_len =
            u16::from_le_bytes([zip[offset + name_len_at], zip[offset + name_len_at + 1]]) as usize;
        if zip.get(offset + name_at..offset + name_at + name_len) == Some(name.as_bytes()) {
            zip[offset + size_at..offset + size_at + 4].copy_from_slice(&declared.to_le_bytes());
            patched += 1;
        }
    }
    assert_eq!(patched, 2, "local header and central directory");
    zip
}

#[test]
fn a_zip_member_inflating_past_its_declared_size_is_refused() {
    let files = vec![
        ("2750/Forest/Forest_1.jpg".to_string(), jpeg(1)),
        ("2750/Forest/bomb.jpg".to_string(), vec![0u8; 4 << 20]),
    ];
    let bomb = lie_about_size(zip(&files), "2750/Forest/bomb.jpg", 1000);
    let (message, _dir) = refused("eurosat_rgb", bomb, &[]);
    assert!(
        message.contains("member `2750/Forest/bomb.jpg`: inflates past the 1000 bytes its header declares"),
        "{message}"
    );
}

#[test]
fn an_archive_declaring_more_than_the_extraction_cap_is_refused_before_it_writes() {
    let files = vec![("2750/Forest/big.jpg".to_string(), vec![0u8; 2 << 20])];
    let (message, dir) = refused("eurosat_rgb", zip(&files), &["--max-extract-gib", "0.001"]);
    assert!(
        message.contains(&format!("declares {} bytes of members, over the 1073741-byte cap", 2 << 20)),
        "{message}"
    );
    assert!(tree(&dir.path().join("data/.sal-fetch/eurosat_rgb.partial")).is_empty());
}

#[test]
fn an_interrupted_extraction_publishes_nothing_and_the_next_fetch_clears_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start();
    let good = fixture("imagenette");
    // The same archive cut short: its own checksum (a mirror's) passes, its tar stream ends early.
    let cut = good.bytes[..good.bytes.len() * 2 / 3].to_vec();
    let (root, catalogue) = one(
        dir.path(),
        &server,
        &good,
        Some(&sha256(&cut)),
        Served { bytes: cut.clone(), ..Served::default() },
    );
    let out = sal_data(&["fetch", "imagenette", "--to", &root, "--catalogue", &catalogue]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("a truncated or damaged archive?"), "{}", text(&out));
    let root_path = Path::new(&root);
    assert!(!root_path.join("imagenette2").exists(), "{:?}", tree(root_path));
    assert!(
        !tree(&root_path.join(".sal-fetch/imagenette.partial")).is_empty(),
        "the half extraction stays hidden"
    );

    let (_, catalogue) = one(
        dir.path(),
        &server,
        &good,
        Some(&sha256(&good.bytes)),
        Served { bytes: good.bytes.clone(), ..Served::default() },
    );
    let out = sal_data(&["fetch", "imagenette", "--to", &root, "--catalogue", &catalogue]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("left by an interrupted fetch"), "{}", text(&out));
    assert!(root_path.join("imagenette2/val/n02102040/d.JPEG").is_file());
    assert!(!root_path.join(".sal-fetch/imagenette.partial").exists());
}

#[test]
fn an_archive_nobody_pins_is_pinned_on_first_download_and_another_file_is_refused_later() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start();
    let f = fixture("corel1k");
    let (root, catalogue) =
        one(dir.path(), &server, &f, None, Served { bytes: f.bytes.clone(), ..Served::default() });
    let out = sal_data(&["fetch", "corel1k", "--to", &root, "--catalogue", &catalogue]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no published sha256: pinned in"), "{}", text(&out));

    // Another archive of the same name, handed over with --from: it is not the pinned one.
    let other = write(&dir.path().join("test1.tar"), &corel_archive(77));
    let out = sal_data(&[
        "fetch",
        "corel1k",
        "--to",
        &root,
        "--catalogue",
        &catalogue,
        "--from",
        &other.display().to_string(),
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("pinned") && text(&out).contains(&sha256(&f.bytes)), "{}", text(&out));
    assert!(other.is_file(), "--from's file is the user's: never deleted");
    // The published folder is the first one, untouched.
    assert_eq!(std::fs::read(Path::new(&root).join("corel1k/0.jpg")).expect("jpeg"), jpeg(1));
}

#[test]
fn an_existing_folder_not_made_by_fetch_is_left_alone_without_force() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start();
    let f = fixture("corel1k");
    let (root, catalogue) = one(
        dir.path(),
        &server,
        &f,
        Some(&sha256(&f.bytes)),
        Served { bytes: f.bytes.clone(), ..Served::default() },
    );
    write(&Path::new(&root).join("corel1k/mine.jpg"), b"the user's own");
    let out = sal_data(&["fetch", "corel1k", "--to", &root, "--catalogue", &catalogue]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("already exists and was not made from this archive"), "{}", text(&out));
    assert!(server.seen().is_empty(), "refused before downloading");
    assert!(Path::new(&root).join("corel1k/mine.jpg").is_file());
}

#[test]
fn a_second_fetch_into_the_same_root_at_once_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("data");
    std::fs::create_dir_all(root.join(".sal-fetch")).expect("mkdir");
    let held = std::fs::File::create(root.join(".sal-fetch/fetch.lock")).expect("lock file");
    fs4::FileExt::try_lock(&held).expect("the test holds the lock");
    let out = sal_data(&["fetch", "corel1k", "--to", &root.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("another `data fetch` is running here"), "{}", text(&out));
    drop(held);
}
