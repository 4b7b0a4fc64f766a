// Shared by build scripts via `include!`: the git commit the crate is built from, as the
// compile-time environment variable `SAL_GIT_COMMIT` (empty outside a git checkout, or without
// git), for the manifest every result carries.
//
// The script reruns only when HEAD moves: it watches the files that say where HEAD points (HEAD
// itself, its reflog, the branch's loose ref, `packed-refs`), never the whole refs folder, which every commit on
// any other branch or worktree touches, and never the work tree, so that an edit does not make
// every build rerun it. Uncommitted changes are not flagged: the commit is the last one made.
fn git_commit() {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map(std::path::PathBuf::from).unwrap_or_default();
    let git = |args: &[&str]| -> Option<String> {
        let output = std::process::Command::new("git").args(args).current_dir(&dir).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    let commit =
        git(&["rev-parse", "HEAD"]).filter(|c| c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()));
    println!("cargo:rustc-env=SAL_GIT_COMMIT={}", commit.as_deref().unwrap_or(""));
    if commit.is_none() {
        return;
    }
    // `logs/HEAD` (this work tree's reflog) changes with every commit and checkout here, also when
    // the branch's ref is packed and its loose file does not exist yet.
    let mut watched: Vec<Option<String>> = ["HEAD", "logs/HEAD", "packed-refs"]
        .iter()
        .map(|path| git(&["rev-parse", "--git-path", path]))
        .collect();
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    for path in watched.into_iter().flatten() {
        let path = dir.join(path);
        // A missing file would make cargo rerun the script on every build.
        if path.is_file() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
