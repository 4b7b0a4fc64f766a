//! What the `data` tests share: a small real HTTP server on loopback (byte ranges, a slow mode, a
//! connection dropped mid-file), archives built in each dataset's real format, a catalogue that
//! points at them, and the `sal-data` binary.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Cursor, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// How the server serves one file.
#[derive(Debug, Clone, Default)]
pub struct Served {
    pub bytes: Vec<u8>,
    /// The first request for it is cut after this many body bytes (the connection dropped).
    pub drop_after: Option<usize>,
    /// Sent in 1 KiB writes with a pause between them (a slow link).
    pub slow: bool,
    /// The first request for it stalls after this many body bytes: the connection stays open,
    /// silent, until the client gives up on it.
    pub stall_after: Option<usize>,
}

/// One request the server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub path: String,
    pub range_start: Option<u64>,
}

#[derive(Default)]
struct State {
    files: HashMap<String, Served>,
    seen: Vec<Seen>,
}

pub struct Server {
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Server { base, state }
    }

    pub fn add(&self, path: &str, served: Served) -> String {
        self.state.lock().expect("state").files.insert(path.to_string(), served);
        format!("{}{path}", self.base)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().expect("state").seen.clone()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range_start = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range_start = value.trim().trim_end_matches('-').parse::<u64>().ok();
        }
    }
    let served = {
        let mut state = state.lock().expect("state");
        state.seen.push(Seen { path: path.clone(), range_start });
        let served = state.files.get(&path).cloned();
        // The drop happens once: the retry gets the whole answer.
        if let Some(file) = state.files.get_mut(&path) {
            file.drop_after = None;
            file.stall_after = None;
        }
        served
    };
    let mut stream = stream;
    let Some(served) = served else {
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let total = served.bytes.len() as u64;
    let start = range_start.unwrap_or(0).min(total);
    let body = &served.bytes[start as usize..];
    let head = if range_start.is_some() {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{total}\r\nConnection: close\r\n\r\n",
            body.len(),
            total.saturating_sub(1)
        )
    } else {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
            body.len()
        )
    };
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let body = match served.drop_after.or(served.stall_after) {
        Some(n) => &body[..n.min(body.len())],
        None => body,
    };
    if served.slow {
        for chunk in body.chunks(1024) {
            if stream.write_all(chunk).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    } else {
        let _ = stream.write_all(body);
    }
    let _ = stream.flush();
    if served.stall_after.is_some() {
        // Silent until the client hangs up (its read timeout): read() returns 0 or fails then.
        let mut byte = [0u8; 1];
        let _ = std::io::Read::read(&mut reader, &mut byte);
    }
    // Dropping the stream closes the connection (mid-file when drop_after cut the body).
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A small real JPEG.
pub fn jpeg(seed: u8) -> Vec<u8> {
    let image = image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([seed, (x * 30) as u8, (y * 30) as u8]));
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Jpeg).expect("encode jpeg");
    out.into_inner()
}

/// A JPEG of `side` x `side` noisy pixels: its scan data is most of the file.
pub fn noisy_jpeg(side: u32, seed: u32) -> Vec<u8> {
    noisy(side, seed, image::ImageFormat::Jpeg)
}

/// The same as a PNG.
pub fn noisy_png(side: u32, seed: u32) -> Vec<u8> {
    noisy(side, seed, image::ImageFormat::Png)
}

fn noisy(side: u32, seed: u32, format: image::ImageFormat) -> Vec<u8> {
    let image = image::RgbImage::from_fn(side, side, |x, y| {
        let v = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503) ^ seed).wrapping_mul(2246822519);
        image::Rgb([(v >> 8) as u8, (v >> 16) as u8, (v >> 24) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

/// The cells of the table row that starts with `name` (comfy-table's borders stripped).
pub fn row(table: &str, name: &str) -> Vec<String> {
    let line = table
        .lines()
        .find(|l| l.split(['│', '┆']).nth(1).is_some_and(|c| c.trim() == name))
        .unwrap_or_else(|| panic!("no row `{name}` in\n{table}"));
    line.split(['│', '┆']).map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect()
}

/// A gzipped tar of `files` (path, bytes).
pub fn tar_gz(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, path, bytes.as_slice()).expect("tar member");
    }
    builder.into_inner().expect("tar").finish().expect("gzip")
}

/// A plain tar of `files`.
pub fn tar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, path, bytes.as_slice()).expect("tar member");
    }
    builder.into_inner().expect("tar")
}

/// A zip of `files`, deflated.
pub fn zip(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (path, bytes) in files {
        writer.start_file(path.as_str(), options).expect("zip member");
        writer.write_all(bytes).expect("zip data");
    }
    writer.finish().expect("zip").into_inner()
}

fn images(prefix: &str, names: &[&str], seed: u8) -> Vec<(String, Vec<u8>)> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("{prefix}/{n}"), jpeg(seed.wrapping_add(i as u8))))
        .collect()
}

/// fastai's imagenette2.tgz / imagewoof2.tgz: `<top>/{train,val}/<wnid>/*.JPEG` and a CSV.
pub fn imagenette_archive(top: &str) -> Vec<u8> {
    let mut files = vec![(format!("{top}/noisy_imagenette.csv"), b"path,noisy_labels_0\n".to_vec())];
    for wnid in ["n01440764", "n02102040"] {
        files.extend(images(&format!("{top}/train/{wnid}"), &["a.JPEG", "b.JPEG", "c.JPEG"], 10));
        files.extend(images(&format!("{top}/val/{wnid}"), &["d.JPEG"], 50));
    }
    tar_gz(&files)
}

/// CS231n's tiny-imagenet-200.zip.
pub fn tiny_imagenet_archive() -> Vec<u8> {
    let wnids = ["n01443537", "n01629819"];
    let mut files = vec![
        ("tiny-imagenet-200/wnids.txt".to_string(), format!("{}\n{}\n", wnids[0], wnids[1]).into_bytes()),
        ("tiny-imagenet-200/words.txt".to_string(), b"n01443537\tgoldfish\nn01629819\tsalamander\n".to_vec()),
    ];
    let mut annotations = String::new();
    for (i, wnid) in wnids.iter().enumerate() {
        files.extend(images(
            &format!("tiny-imagenet-200/train/{wnid}/images"),
            &[&format!("{wnid}_0.JPEG"), &format!("{wnid}_1.JPEG")],
            20,
        ));
        files.push((format!("tiny-imagenet-200/train/{wnid}/{wnid}_boxes.txt"), b"x\t0\t0\t8\t8\n".to_vec()));
        files.push((format!("tiny-imagenet-200/val/images/val_{i}.JPEG"), jpeg(90 + i as u8)));
        annotations.push_str(&format!("val_{i}.JPEG\t{wnid}\t0\t0\t8\t8\n"));
    }
    files.push(("tiny-imagenet-200/val/val_annotations.txt".into(), annotations.into_bytes()));
    files.push(("tiny-imagenet-200/test/images/test_0.JPEG".into(), jpeg(7)));
    zip(&files)
}

/// DFKI's EuroSAT.zip: `2750/<Class>/<Class>_<n>.jpg`.
pub fn eurosat_archive() -> Vec<u8> {
    let mut files = Vec::new();
    for class in ["AnnualCrop", "Forest", "River"] {
        files.extend(images(
            &format!("2750/{class}"),
            &[&format!("{class}_1.jpg"), &format!("{class}_2.jpg"), &format!("{class}_3.jpg")],
            30,
        ));
    }
    zip(&files)
}

/// DomainBed's PACS.zip: `kfold/<domain>/<class>/*`.
pub fn pacs_archive() -> Vec<u8> {
    let mut files = Vec::new();
    for domain in ["art_painting", "cartoon", "photo", "sketch"] {
        for class in ["dog", "horse"] {
            files.extend(images(&format!("kfold/{domain}/{class}"), &["1.jpg", "2.jpg"], 40));
        }
    }
    zip(&files)
}

/// Toronto's cifar-10-binary.tar.gz: five training batches, a test batch, the class names.
pub fn cifar_archive(records_per_batch: usize) -> Vec<u8> {
    let batch = |seed: u8| -> Vec<u8> {
        (0..records_per_batch)
            .flat_map(|i| std::iter::once((i % 10) as u8).chain(std::iter::repeat_n(seed, 3072)))
            .collect()
    };
    let mut files: Vec<(String, Vec<u8>)> =
        (1..=5).map(|i| (format!("cifar-10-batches-bin/data_batch_{i}.bin"), batch(i))).collect();
    files.push(("cifar-10-batches-bin/test_batch.bin".into(), batch(9)));
    let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    files.push(("cifar-10-batches-bin/batches.meta.txt".into(), names.as_bytes().to_vec()));
    files.push(("cifar-10-batches-bin/readme.html".into(), b"<html></html>".to_vec()));
    tar_gz(&files)
}

/// Wang's test1.tar: `image.orig/<n>.jpg`, class = n / 100 (two classes of three here).
pub fn corel_archive(seed: u8) -> Vec<u8> {
    tar(&images("image.orig", &["0.jpg", "1.jpg", "2.jpg", "100.jpg", "101.jpg", "102.jpg"], seed))
}

/// One catalogue entry for a test archive (same name, format and root as the real one).
pub fn dataset_entry(
    name: &str,
    file: &str,
    archive: &str,
    sha256: Option<&str>,
    format: &str,
    root: &str,
    member: &str,
) -> String {
    let mut text = format!(
        "- name: {name}\n  title: test {name}\n  url: http://127.0.0.1:9/unused/{file}\n  file: {file}\n  archive: {archive}\n  format: {format}\n  root: {root}\n  members: [{member}]\n  licence: test\n  homepage: test\n"
    );
    if let Some(sha256) = sha256 {
        text.push_str(&format!("  sha256: {sha256}\n  sha256_source: the test\n"));
    }
    text
}

pub fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, bytes).expect("write");
    path.to_path_buf()
}

/// Runs `sal-data ARGS` (no terminal: no progress bar).
pub fn sal_data(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sal-data")).args(args).output().expect("run sal-data")
}

pub fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Every path under `dir`, relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(dir).unwrap_or(&path).display().to_string());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}
