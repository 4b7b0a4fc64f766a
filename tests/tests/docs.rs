//! The documentation's commands are commands the binaries accept, and its links lead somewhere.
//!
//! Every fenced code block of `README.md` and `docs/**/*.md` tagged `bash`, `sh`, `shell`,
//! `console` (its `$ ` lines) or not tagged at all is read as shell: continued lines joined,
//! comments dropped, split at `&&`, `||`, `;`, `|` and `&` into single commands, leading
//! `VAR=value` assignments and `sudo` stripped, redirections cut. Each command that runs one of
//! this project's binaries (`coordinator`, `worker`, `sal-data`; by name, as `target/*/NAME`,
//! `./NAME`, or through `cargo run -p PACKAGE [--bin NAME] -- ...`) is run with its documented
//! arguments and `--help` appended: clap parses every flag and value before it prints the help,
//! so a flag that no longer exists or a value it does not accept fails here, with the page and
//! line, without running anything. Every `scripts/`, `deploy/` and `sweeps/` path a command names
//! must exist, and a script that is run must be executable; every `cargo -p` must name a member
//! of the workspace. Output shown in the docs goes in blocks tagged `text`, which are not read.
//!
//! A second test checks that every relative link of those pages leads to a file, and every
//! `#anchor` to a heading of the page it names.
//!
//! Needs the three binaries in `target/<profile>/`: `cargo test --workspace` builds them, or
//! `cargo build -p coordinator -p worker -p datasets` before `cargo test -p e2e --test docs`.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::binary;

/// The project's binaries: (cargo package, binary).
const BINARIES: [(&str, &str); 3] =
    [("coordinator", "coordinator"), ("worker", "worker"), ("datasets", "sal-data")];

/// Paths of the repository that commands name and that must exist.
const CHECKED_PATHS: [&str; 3] = ["scripts/", "deploy/", "sweeps/"];

/// The fewest project commands the docs hold; fewer means the extractor broke.
const AT_LEAST: usize = 20;

/// How long `--help` may take before it counts as having run the command instead.
const HELP_DEADLINE: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `README.md` and every `.md` under `docs/`, as paths relative to the repository.
fn doc_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("a readable folder").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|ext| ext == "md") {
                out.push(path.strip_prefix(base).expect("under the repository").to_path_buf());
            }
        }
    }
    let root = repo();
    let mut files = vec![PathBuf::from("README.md")];
    walk(&root.join("docs"), &root, &mut files);
    files
}

/// A fenced code block: the first word of its info string, the line numbers (1-based) of its
/// two fences, and its lines with their line numbers.
struct Block {
    lang: String,
    fences: (usize, usize),
    lines: Vec<(usize, String)>,
}

/// The fenced code blocks of a markdown text (``` or ~~~ fences, indented ones too).
fn fenced_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, Block)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim_start();
        let fence: String = trimmed.chars().take_while(|&c| c == '`' || c == '~').collect();
        let is_fence = fence.len() >= 3 && !(fence.contains('`') && fence.contains('~'));
        let info = trimmed[fence.len()..].trim();
        match open.take() {
            None if is_fence => {
                let lang = info.split_whitespace().next().unwrap_or("").to_string();
                open = Some((fence, Block { lang, fences: (number, number), lines: Vec::new() }));
            }
            None => {}
            Some((opening, mut block)) if is_fence && fence.starts_with(&opening) && info.is_empty() => {
                block.fences.1 = number;
                blocks.push(block);
            }
            Some((opening, mut block)) => {
                block.lines.push((number, line.to_string()));
                open = Some((opening, block));
            }
        }
    }
    blocks
}

/// One simple command: the line it starts on and its words, quotes removed.
#[derive(Debug, Clone, PartialEq)]
struct ShellCommand {
    line: usize,
    words: Vec<String>,
}

impl ShellCommand {
    fn text(&self) -> String {
        self.words.join(" ")
    }
}

/// The logical lines of a shell block: continued lines (`\` at the end) joined, each with the
/// number of its first line. In a `console` block only `$ ` lines are commands.
fn logical_lines(block: &Block) -> Vec<(usize, String)> {
    let console = block.lang == "console";
    let mut lines = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (number, line) in &block.lines {
        let text = if current.is_some() {
            line.as_str()
        } else if console {
            match line.trim_start().strip_prefix("$ ") {
                Some(command) => command,
                None => continue,
            }
        } else {
            line.as_str()
        };
        let text = text.trim_end();
        let (body, continued) = match text.strip_suffix('\\') {
            Some(body) => (body, true),
            None => (text, false),
        };
        let entry = current.get_or_insert_with(|| (*number, String::new()));
        entry.1.push_str(body);
        entry.1.push(' ');
        if !continued {
            lines.extend(current.take());
        }
    }
    lines.extend(current);
    lines
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    /// `&&`, `||`, `;`, `|`, `&`, `(`, `)`: the end of a simple command.
    Separator,
    /// `>`, `>>`, `<`, `2>`, `&>`: the next word is its target, not an argument.
    Redirection,
}

/// Splits one logical line into words and operators as a POSIX shell would, well enough for
/// documentation: quotes, backslashes, comments, `$(...)` and `<(...)` kept whole.
fn tokenize(line: &str) -> Vec<Token> {
    let chars: Vec<char> = line.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let flush = |word: &mut String, in_word: &mut bool, tokens: &mut Vec<Token>| {
        if *in_word {
            tokens.push(Token::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    // Copies a parenthesised group starting at `i` (its `(`) into `word`; returns the index of
    // its closing `)`.
    let group = |mut i: usize, word: &mut String| {
        let mut depth = 0;
        while let Some(c) = at(i) {
            word.push(c);
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        i
    };
    let mut i = 0;
    while let Some(c) = at(i) {
        match c {
            ' ' | '\t' => flush(&mut word, &mut in_word, &mut tokens),
            '\'' => {
                in_word = true;
                i += 1;
                while let Some(q) = at(i).filter(|&q| q != '\'') {
                    word.push(q);
                    i += 1;
                }
            }
            '"' => {
                in_word = true;
                i += 1;
                while let Some(q) = at(i).filter(|&q| q != '"') {
                    if q == '\\' && matches!(at(i + 1), Some('"' | '\\' | '$' | '`')) {
                        i += 1;
                    }
                    word.extend(at(i));
                    i += 1;
                }
            }
            '\\' => {
                in_word = true;
                i += 1;
                word.extend(at(i));
            }
            '#' if !in_word => break,
            '$' if at(i + 1) == Some('(') => {
                in_word = true;
                word.push('$');
                i = group(i + 1, &mut word);
            }
            '&' if at(i + 1) == Some('>') => {
                flush(&mut word, &mut in_word, &mut tokens);
                tokens.push(Token::Redirection);
                i += if at(i + 2) == Some('>') { 2 } else { 1 };
            }
            ';' | '|' | '&' | '(' | ')' => {
                flush(&mut word, &mut in_word, &mut tokens);
                tokens.push(Token::Separator);
                if (c == '&' || c == '|') && at(i + 1) == Some(c) {
                    i += 1;
                }
            }
            '<' if at(i + 1) == Some('(') => {
                flush(&mut word, &mut in_word, &mut tokens);
                let mut substitution = String::from("<");
                i = group(i + 1, &mut substitution);
                tokens.push(Token::Word(substitution));
            }
            '<' | '>' => {
                // A file descriptor's number right before it (`2>`) belongs to the redirection.
                if in_word && !word.is_empty() && word.chars().all(|d| d.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                flush(&mut word, &mut in_word, &mut tokens);
                if at(i + 1) == Some(c) {
                    i += 1;
                }
                if c == '>' && at(i + 1) == Some('&') {
                    // `>&2`: a duplication, with no target word.
                    i += 1;
                    while at(i + 1).is_some_and(|d| d.is_ascii_digit() || d == '-') {
                        i += 1;
                    }
                } else {
                    tokens.push(Token::Redirection);
                }
            }
            _ => {
                in_word = true;
                word.push(c);
            }
        }
        i += 1;
    }
    flush(&mut word, &mut in_word, &mut tokens);
    tokens
}

/// The simple commands of one logical line, without redirections, leading `VAR=value`
/// assignments and `sudo`.
fn simple_commands(line: usize, text: &str) -> Vec<ShellCommand> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut tokens = tokenize(text).into_iter();
    let mut finish = |words: &mut Vec<String>| {
        let start =
            words.iter().position(|word| !is_assignment(word) && word != "sudo").unwrap_or(words.len());
        if start < words.len() {
            commands.push(ShellCommand { line, words: words[start..].to_vec() });
        }
        words.clear();
    };
    while let Some(token) = tokens.next() {
        match token {
            Token::Word(word) => words.push(word),
            Token::Separator => finish(&mut words),
            Token::Redirection => {
                tokens.next();
            }
        }
    }
    finish(&mut words);
    commands
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// Every shell command of a markdown text.
fn commands_in(markdown: &str) -> Vec<ShellCommand> {
    fenced_blocks(markdown)
        .iter()
        .filter(|block| matches!(block.lang.as_str(), "" | "bash" | "sh" | "shell" | "console"))
        .flat_map(logical_lines)
        .flat_map(|(line, text)| simple_commands(line, &text))
        .collect()
}

/// A command that runs one of this project's binaries: the binary and its arguments.
#[derive(Debug, PartialEq)]
struct BinaryRun {
    binary: String,
    args: Vec<String>,
}

/// Which of the project's binaries a command runs, if any. `Err` for a `cargo run` of one of our
/// packages that names a binary the package does not have.
fn project_binary(command: &ShellCommand) -> Result<Option<BinaryRun>, String> {
    let Some((program, rest)) = command.words.split_first() else { return Ok(None) };
    let is_ours = |name: &str| BINARIES.iter().any(|(_, binary)| *binary == name);
    let local = program.strip_prefix("./").unwrap_or(program);
    let name = ["target/release/", "target/debug/"]
        .iter()
        .find_map(|prefix| local.strip_prefix(prefix))
        .unwrap_or(local);
    if is_ours(name) {
        return Ok(Some(BinaryRun { binary: name.to_string(), args: rest.to_vec() }));
    }
    if program != "cargo" || rest.first().map(String::as_str) != Some("run") {
        return Ok(None);
    }
    let (options, args) = match rest.iter().position(|word| word == "--") {
        Some(dash) => (&rest[1..dash], &rest[dash + 1..]),
        None => (&rest[1..], &rest[rest.len()..]),
    };
    let (mut package, mut bin) = (None, None);
    let mut options = options.iter();
    while let Some(option) = options.next() {
        let value = |options: &mut std::slice::Iter<String>, flag: &str| {
            option.strip_prefix(flag).and_then(|v| v.strip_prefix('=')).map(str::to_string).or_else(|| {
                if option == flag {
                    options.next().cloned()
                } else {
                    None
                }
            })
        };
        if let Some(p) = value(&mut options, "--package").or_else(|| value(&mut options, "-p")) {
            package = Some(p);
        } else if let Some(p) = option.strip_prefix("-p").filter(|p| !p.is_empty()) {
            package = Some(p.to_string());
        } else if let Some(b) = value(&mut options, "--bin") {
            bin = Some(b);
        } else if option == "--example" || option.starts_with("--example=") {
            return Ok(None);
        } else if ["--features", "-F", "--profile", "--target", "--manifest-path"].contains(&option.as_str())
        {
            options.next();
        }
    }
    let Some((_, default)) = BINARIES.iter().find(|(p, _)| Some(*p) == package.as_deref()) else {
        return Ok(None);
    };
    let binary = bin.unwrap_or_else(|| default.to_string());
    if !is_ours(&binary) {
        return Err(format!("`--bin {binary}`: package {} has no such binary", package.unwrap_or_default()));
    }
    Ok(Some(BinaryRun { binary, args: args.to_vec() }))
}

/// The package names of the workspace's members (`members = [...]` in the root `Cargo.toml`,
/// each folder's `name = "..."`).
fn workspace_members() -> BTreeSet<String> {
    let root = repo();
    let read =
        |path: PathBuf| std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest = read(root.join("Cargo.toml"));
    let list = manifest
        .split_once("members")
        .and_then(|(_, rest)| rest.split_once('['))
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .expect("`members = [...]` in Cargo.toml");
    let folders = list.split(',').map(|m| m.trim().trim_matches('"')).filter(|m| !m.is_empty());
    folders
        .map(|folder| {
            let member = read(root.join(folder).join("Cargo.toml"));
            member
                .lines()
                .find_map(|line| line.strip_prefix("name = "))
                .map(|name| name.trim().trim_matches('"').to_string())
                .unwrap_or_else(|| panic!("{folder}/Cargo.toml names no package"))
        })
        .collect()
}

/// What is wrong with the repository paths and cargo packages a command names.
fn path_problems(command: &ShellCommand, members: &BTreeSet<String>) -> Vec<String> {
    let root = repo();
    let mut problems = Vec::new();
    for (index, word) in command.words.iter().enumerate() {
        let value = word.split_once('=').map_or(word.as_str(), |(_, value)| value);
        let path = value.strip_prefix("./").unwrap_or(value);
        if !CHECKED_PATHS.iter().any(|prefix| path.starts_with(prefix)) {
            continue;
        }
        let on_disk = root.join(path.trim_end_matches('/'));
        if !on_disk.exists() {
            problems.push(format!("`{path}` does not exist"));
        } else if index == 0 {
            let mode = on_disk.metadata().map(|m| m.permissions().mode()).unwrap_or(0);
            if !on_disk.is_file() || mode & 0o111 == 0 {
                problems.push(format!("`{path}` is run but is not an executable file"));
            }
        }
    }
    if command.words.first().map(String::as_str) == Some("cargo") {
        let mut words = command.words.iter().take_while(|w| *w != "--");
        while let Some(word) = words.next() {
            let package = match word.as_str() {
                "-p" | "--package" => words.next().cloned(),
                _ => word.strip_prefix("--package=").map(str::to_string),
            };
            if let Some(package) = package.filter(|p| !members.contains(p)) {
                problems.push(format!("`-p {package}` is not a member of the workspace"));
            }
        }
    }
    problems
}

/// Runs `binary ARGS... --help` in an empty folder; `Err` with what it printed unless it exits 0.
fn help_accepts(run: &BinaryRun) -> Result<(), String> {
    let cwd = tempfile::tempdir().expect("a temporary folder");
    let child = Command::new(binary(&run.binary))
        .args(&run.args)
        .arg("--help")
        .current_dir(cwd.path())
        .env_remove("SAL_TOKEN")
        .env_remove("SAL_READ_TOKEN")
        .env_remove("SAL_DATA_ROOT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(HELP_DEADLINE) {
        Ok(output) => output.map_err(|e| format!("cannot wait: {e}"))?,
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            return Err(format!("still running after {HELP_DEADLINE:?}: `--help` did not stop it"));
        }
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).take(4).collect();
    Err(format!("exited with {}: {}", output.status, said.join(" / ")))
}

#[test]
fn every_documented_command_parses_and_every_path_it_names_exists() {
    let root = repo();
    let members = workspace_members();
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in doc_files() {
        let markdown = std::fs::read_to_string(root.join(&file)).expect("a readable page");
        for command in commands_in(&markdown) {
            let at = format!("{}:{}: `{}`", file.display(), command.line, command.text());
            for problem in path_problems(&command, &members) {
                failures.push(format!("{at}: {problem}"));
            }
            match project_binary(&command) {
                Ok(Some(run)) => {
                    checked += 1;
                    if let Err(problem) = help_accepts(&run) {
                        failures.push(format!("{at}: {problem}"));
                    }
                }
                Ok(None) => {}
                Err(problem) => failures.push(format!("{at}: {problem}")),
            }
        }
    }
    println!("{checked} documented commands of this project's binaries checked with --help");
    assert!(failures.is_empty(), "{} documented command(s) fail:\n{}", failures.len(), failures.join("\n"));
    assert!(
        checked >= AT_LEAST,
        "only {checked} commands of this project's binaries found in the docs (at least {AT_LEAST} \
         expected): the extractor is broken, or the docs lost their examples"
    );
}

/// GitHub's anchor for a heading: lower case, letters, digits, `-` and `_` kept, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings (outside code blocks).
fn anchors(markdown: &str) -> BTreeSet<String> {
    outside_code_blocks(markdown)
        .iter()
        .filter_map(|line| line.strip_prefix('#'))
        .map(|heading| anchor(heading.trim_start_matches('#')))
        .collect()
}

/// A page's lines, those of fenced code blocks (fences included) blanked.
fn outside_code_blocks(markdown: &str) -> Vec<String> {
    let code: BTreeSet<usize> =
        fenced_blocks(markdown).iter().flat_map(|block| block.fences.0..=block.fences.1).collect();
    markdown
        .lines()
        .enumerate()
        .map(|(index, line)| if code.contains(&(index + 1)) { String::new() } else { line.to_string() })
        .collect()
}

/// The targets of a page's inline links `[text](target)`, with their line numbers.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (index, line) in outside_code_blocks(markdown).iter().enumerate() {
        // Inline code spans are not links.
        let line: String = line.split('`').step_by(2).collect();
        let mut rest = line.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            found.push((index + 1, after[..end].trim().to_string()));
            rest = &after[end..];
        }
    }
    found
}

#[test]
fn every_relative_link_leads_to_a_page_and_heading_that_exist() {
    let root = repo();
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in doc_files() {
        let markdown = std::fs::read_to_string(root.join(&file)).expect("a readable page");
        let dir = root.join(&file).parent().expect("a page lies in a folder").to_path_buf();
        for (line, target) in links(&markdown) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, fragment) = target.split_once('#').unwrap_or((target.as_str(), ""));
            let page = if path.is_empty() { root.join(&file) } else { dir.join(path) };
            let at = format!("{}:{line}: ({target})", file.display());
            let shown = page.strip_prefix(&root).unwrap_or(&page).display().to_string();
            if !page.exists() {
                failures.push(format!("{at}: {shown} does not exist"));
                continue;
            }
            if !fragment.is_empty() {
                let text = std::fs::read_to_string(&page).unwrap_or_default();
                if !anchors(&text).contains(fragment) {
                    failures.push(format!("{at}: no heading #{fragment} in {shown}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} broken link(s):\n{}", failures.len(), failures.join("\n"));
    assert!(checked >= AT_LEAST, "only {checked} relative links found: the link reader is broken");
}

#[test]
fn the_extractor_reads_continuations_assignments_comments_and_operators() {
    let markdown = "\
Some prose with `coordinator --inline` code, not a command.

```bash
# a comment line
FOO=1 sudo coordinator --sweep sweeps/smoke.yaml \\
    --local   # a trailing comment
cargo build -p worker && cargo run --release -p worker -- train --trial X 2>&1 | tee log
echo 'a && b' \"$HOME/x\" > out.txt; ./target/release/sal-data list < in
```

```text
worker --not-a-command
```

```console
$ cargo run -p datasets --bin sal-data -- check --sweep FILE
output: worker --also-not-a-command
```
";
    let commands = commands_in(markdown);
    let seen: Vec<(usize, String)> = commands.iter().map(|c| (c.line, c.text())).collect();
    let expected = [
        (5, "coordinator --sweep sweeps/smoke.yaml --local"),
        (7, "cargo build -p worker"),
        (7, "cargo run --release -p worker -- train --trial X"),
        (7, "tee log"),
        (8, "echo a && b $HOME/x"),
        (8, "./target/release/sal-data list"),
        (16, "cargo run -p datasets --bin sal-data -- check --sweep FILE"),
    ];
    let expected: Vec<(usize, String)> = expected.iter().map(|(n, t)| (*n, t.to_string())).collect();
    assert_eq!(seen, expected);
    assert_eq!(commands[4].words, ["echo", "a && b", "$HOME/x"]);

    let runs: Vec<BinaryRun> = commands.iter().filter_map(|c| project_binary(c).unwrap()).collect();
    let run = |binary: &str, args: &[&str]| BinaryRun {
        binary: binary.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
    };
    assert_eq!(
        runs,
        [
            run("coordinator", &["--sweep", "sweeps/smoke.yaml", "--local"]),
            run("worker", &["train", "--trial", "X"]),
            run("sal-data", &["list"]),
            run("sal-data", &["check", "--sweep", "FILE"]),
        ]
    );

    let members: BTreeSet<String> = ["worker".to_string()].into();
    let unknown =
        ShellCommand { line: 1, words: ["cargo", "build", "-p", "nothing"].map(String::from).to_vec() };
    assert_eq!(path_problems(&unknown, &members), ["`-p nothing` is not a member of the workspace"]);
    let missing = ShellCommand { line: 1, words: ["scripts/no-such-script.sh".to_string()].to_vec() };
    assert_eq!(path_problems(&missing, &members), ["`scripts/no-such-script.sh` does not exist"]);
    assert_eq!(
        anchor("The trial path (`worker train`) against the engine"),
        "the-trial-path-worker-train-against-the-engine"
    );
}
