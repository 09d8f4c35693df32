//! README.md and docs/*.md against the program and the repository: every
//! `ckpt CMD ... --flag` they show exists in that command's `--help`, every
//! relative link resolves (to a file, and to a heading when it names one),
//! and every repository path they name (`docs/results/<dir>`, `scripts/...`,
//! `crates/...`, `examples/...`, `.ci/...`) exists. Needs no root and no
//! engine: it runs `ckpt CMD --help` only.
//!
//! One check: `cargo test -p ckpt --test docs`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// README.md and every docs/*.md, as (path relative to the root, text).
fn documents() -> Vec<(String, String)> {
    let root = repo();
    let mut names = vec!["README.md".to_string()];
    let mut in_docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    in_docs.sort();
    names.extend(in_docs);
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(root.join(&n)).unwrap();
            (n, text)
        })
        .collect()
}

/// A Markdown text split into what is code (blocks, as logical lines, and
/// inline spans) and what is prose (paragraphs and table rows, without
/// their inline code), each with the line it starts on.
#[derive(Debug, Default)]
struct Parts {
    code: Vec<(usize, String)>,
    prose: Vec<(usize, String)>,
}

fn split(text: &str) -> Parts {
    let mut parts = Parts::default();
    let mut fence: Option<&str> = None;
    let mut block: Vec<(usize, String)> = Vec::new();
    let mut paragraph: Vec<(usize, &str)> = Vec::new();
    let mut previous_blank = true;
    let mut in_indented = false;
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let trimmed = line.trim_start();
        if let Some(marker) = fence {
            if trimmed.starts_with(marker) {
                fence = None;
                parts.code.extend(logical_lines(&block));
                block.clear();
            } else {
                block.push((number, line.to_string()));
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            flush_paragraph(&mut paragraph, &mut parts);
            fence = Some(&trimmed[..3]);
            continue;
        }
        let indented = line.starts_with("    ") || line.starts_with('\t');
        if indented && (previous_blank || in_indented) && !line.trim().is_empty() {
            flush_paragraph(&mut paragraph, &mut parts);
            in_indented = true;
            block.push((number, line.to_string()));
            previous_blank = false;
            continue;
        }
        if line.trim().is_empty() {
            previous_blank = true;
            // A blank line inside an indented block does not end it.
            if !in_indented {
                flush_paragraph(&mut paragraph, &mut parts);
            }
            continue;
        }
        if in_indented {
            in_indented = false;
            parts.code.extend(logical_lines(&block));
            block.clear();
        }
        previous_blank = false;
        // Each table row and heading stands alone; other lines join their
        // paragraph (an inline span may continue on the next line).
        if trimmed.starts_with('|') || trimmed.starts_with('#') {
            flush_paragraph(&mut paragraph, &mut parts);
            paragraph.push((number, line));
            flush_paragraph(&mut paragraph, &mut parts);
        } else {
            paragraph.push((number, line));
        }
    }
    parts.code.extend(logical_lines(&block));
    flush_paragraph(&mut paragraph, &mut parts);
    parts
}

/// A paragraph's inline code spans go to `code`, the rest to `prose`.
fn flush_paragraph(paragraph: &mut Vec<(usize, &str)>, parts: &mut Parts) {
    let Some(&(first, _)) = paragraph.first() else {
        return;
    };
    let joined = paragraph
        .iter()
        .map(|(_, l)| l.trim())
        .collect::<Vec<_>>()
        .join("\n");
    let mut prose = String::new();
    for (k, piece) in joined.split('`').enumerate() {
        if k % 2 == 1 {
            parts.code.push((first, piece.replace('\n', " ")));
            prose.push_str("``");
        } else {
            prose.push_str(piece);
        }
    }
    parts.prose.push((first, prose));
    paragraph.clear();
}

/// A code block's commands: a line ending in `\`, or followed by lines
/// that start with an option or a bracket (a synopsis wrapped onto more
/// lines), is one command with them.
fn logical_lines(block: &[(usize, String)]) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut continues = false;
    for (number, line) in block {
        let trimmed = line.trim();
        let wraps = trimmed.starts_with('[') || trimmed.starts_with('-');
        match out.last_mut() {
            Some((_, last)) if continues || (wraps && has_ckpt(last)) => {
                last.push(' ');
                last.push_str(trimmed.trim_end_matches('\\'));
            }
            _ => out.push((*number, trimmed.trim_end_matches('\\').to_string())),
        }
        continues = trimmed.ends_with('\\');
    }
    out
}

fn is_ckpt(token: &str) -> bool {
    token == "ckpt" || token.ends_with("/ckpt")
}

fn has_ckpt(text: &str) -> bool {
    text.split_whitespace().any(is_ckpt)
}

/// A command shown in a document: the words after `ckpt` up to the first
/// option, and the options given.
#[derive(Debug, PartialEq)]
struct Shown {
    words: Vec<String>,
    flags: Vec<String>,
}

/// Words split at white space, a quoted argument (`'a --b'`, `--x="a b"`)
/// being one word; a quote without its closing quote is a plain character.
fn words(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut word = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
        } else if (c == '\'' || c == '"') && (word.is_empty() || word.ends_with('=')) {
            match chars[i + 1..].iter().position(|d| *d == c) {
                Some(len) => {
                    word.extend(&chars[i..i + len + 2]);
                    i += len + 2;
                    continue;
                }
                None => word.push(c),
            }
        } else {
            word.push(c);
        }
        i += 1;
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Every `ckpt ...` command in a piece of code.
fn commands(code: &str) -> Vec<Shown> {
    let owned = words(code);
    let tokens: Vec<&str> = owned.iter().map(String::as_str).collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        // `cargo test -p ckpt` names the package, not the program.
        let package = i > 0 && ["-p", "--package", "--bin"].contains(&tokens[i - 1]);
        if !is_ckpt(tokens[i]) || package {
            i += 1;
            continue;
        }
        i += 1;
        let mut shown = Shown {
            words: Vec::new(),
            flags: Vec::new(),
        };
        let mut options_begun = false;
        while i < tokens.len() {
            let token = tokens[i];
            if is_ckpt(token) || token.starts_with('#') || [";", "&&", "||"].contains(&token) {
                break;
            }
            // A pipe into another program ends the command; `A | --b`
            // inside a synopsis's brackets does not.
            if token == "|" {
                let next = tokens.get(i + 1).copied().unwrap_or("");
                if !(next.starts_with('-') || next.starts_with('[')) {
                    break;
                }
            }
            let bare = token
                .trim_start_matches(['[', '(', '"', '\''])
                .trim_end_matches([']', ')', ',', '.', ';', ':', '"', '\'']);
            if let Some(flag) = option(bare) {
                options_begun = true;
                shown.flags.push(flag);
            } else if !options_begun
                && bare == token
                && !bare.is_empty()
                && (bare.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                    || bare.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            {
                shown.words.push(bare.to_string());
            } else {
                options_begun = true;
            }
            i += 1;
        }
        found.push(shown);
    }
    found
}

/// `--name` or `-x` out of a token (`--name=value` too).
fn option(token: &str) -> Option<String> {
    let name = token.split('=').next().unwrap_or("");
    let long = Regex::new(r"^--[a-z0-9][a-z0-9-]*$").unwrap();
    let short = Regex::new(r"^-[A-Za-z]$").unwrap();
    (long.is_match(name) || short.is_match(name)).then(|| name.to_string())
}

/// What `ckpt WORDS --help` lists: its options and its sub-commands.
#[derive(Debug, Default, Clone)]
struct Help {
    options: BTreeSet<String>,
    subcommands: BTreeSet<String>,
}

fn parse_help(text: &str) -> Help {
    let option = Regex::new(r"^\s+(?:(-[A-Za-z]), )?(--[a-z0-9][a-z0-9-]*)").unwrap();
    let short_only = Regex::new(r"^\s+(-[A-Za-z])\s").unwrap();
    let command = Regex::new(r"^  ([a-z][a-z0-9-]*)(\s|$)").unwrap();
    let mut help = Help::default();
    let mut in_commands = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_commands = line.starts_with("Commands:");
            continue;
        }
        if in_commands {
            if let Some(c) = command.captures(line) {
                help.subcommands.insert(c[1].to_string());
            }
        } else if let Some(c) = option.captures(line) {
            if let Some(s) = c.get(1) {
                help.options.insert(s.as_str().to_string());
            }
            help.options.insert(c[2].to_string());
        } else if let Some(c) = short_only.captures(line) {
            help.options.insert(c[1].to_string());
        }
    }
    help
}

/// Checks documents against the built `ckpt` and the repository at `root`.
struct Checker {
    root: PathBuf,
    helps: HashMap<Vec<String>, Help>,
}

impl Checker {
    fn new(root: PathBuf) -> Checker {
        Checker {
            root,
            helps: HashMap::new(),
        }
    }

    fn help(&mut self, words: &[String]) -> Help {
        if let Some(h) = self.helps.get(words) {
            return h.clone();
        }
        let out = Command::new(env!("CARGO_BIN_EXE_ckpt"))
            .args(words)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ckpt {} --help failed: {}",
            words.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        let help = parse_help(&String::from_utf8_lossy(&out.stdout));
        self.helps.insert(words.to_vec(), help.clone());
        help
    }

    /// Every problem of one document (`name` relative to the root).
    fn check(&mut self, name: &str, text: &str) -> Vec<String> {
        let parts = split(text);
        let mut problems = Vec::new();
        for (line, code) in &parts.code {
            for shown in commands(code) {
                if let Some(p) = self.check_command(&shown) {
                    problems.push(format!("{name}:{line}: {p}"));
                }
            }
        }
        for (line, prose) in &parts.prose {
            for p in self.check_links(name, prose) {
                problems.push(format!("{name}:{line}: {p}"));
            }
        }
        let all = parts.code.iter().chain(&parts.prose);
        for (line, piece) in all {
            for p in self.check_paths(piece) {
                problems.push(format!("{name}:{line}: {p}"));
            }
        }
        // A path in a link's target is found twice; say it once.
        let mut seen = BTreeSet::new();
        problems.retain(|p| seen.insert(p.clone()));
        problems
    }

    fn check_command(&mut self, shown: &Shown) -> Option<String> {
        // The longest run of words that names a (sub-)command.
        let mut path: Vec<String> = Vec::new();
        let mut help = self.help(&path);
        for word in &shown.words {
            if !help.subcommands.contains(word) {
                break;
            }
            path.push(word.clone());
            help = self.help(&path);
        }
        // `ckpt CMD --help`: a placeholder, not a command.
        let next = shown.words.get(path.len());
        if next.is_some_and(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_')) {
            return None;
        }
        let command = format!("ckpt {}", path.join(" ")).trim_end().to_string();
        if path.len() < shown.words.len() && path.is_empty() && !shown.flags.is_empty() {
            return Some(format!(
                "`ckpt {} ...`: no such command (`ckpt --help` lists them)",
                shown.words[0]
            ));
        }
        let missing: Vec<&str> = shown
            .flags
            .iter()
            .filter(|f| !help.options.contains(*f))
            .map(String::as_str)
            .collect();
        (!missing.is_empty()).then(|| {
            format!(
                "`{command}` has no option {} (see `{command} --help`)",
                missing.join(", ")
            )
        })
    }

    fn check_links(&self, name: &str, prose: &str) -> Vec<String> {
        let link = Regex::new(r"\]\(([^)]*)\)").unwrap();
        let base = self.root.join(name);
        let dir = base.parent().unwrap();
        let mut problems = Vec::new();
        for c in link.captures_iter(prose) {
            let target = &c[1];
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            if target.chars().any(char::is_whitespace) || target.is_empty() {
                problems.push(format!(
                    "link target `{}` is empty, broken across lines or holds a space",
                    target.replace('\n', " ")
                ));
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target, None),
            };
            let path = if file.is_empty() {
                base.clone()
            } else {
                dir.join(file)
            };
            if !path.exists() {
                problems.push(format!("link to `{target}`: no such file"));
                continue;
            }
            if let Some(anchor) = anchor {
                if path.extension().is_some_and(|e| e == "md") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    if !anchors(&text).contains(anchor) {
                        problems.push(format!("link to `{target}`: no such heading"));
                    }
                }
            }
        }
        problems
    }

    fn check_paths(&self, piece: &str) -> Vec<String> {
        let path =
            Regex::new(r"(?:^|[^A-Za-z0-9_./-])(?:\./)?((?:docs|scripts|crates|examples|\.ci)/[A-Za-z0-9_./-]*)")
                .unwrap();
        let mut problems = Vec::new();
        for c in path.captures_iter(piece) {
            let m = c.get(1).unwrap();
            let found = m.as_str().trim_end_matches('.');
            let next = piece[m.end()..].chars().next();
            let placeholder = matches!(next, Some('<' | '*' | '{'));
            let full = self.root.join(found);
            let exists = if placeholder {
                // `scripts/patches/criu-<version>-*.patch`: the folder
                // holds something whose name starts so.
                let (folder, start) = found.rsplit_once('/').unwrap();
                std::fs::read_dir(self.root.join(folder))
                    .map(|entries| {
                        entries
                            .filter_map(Result::ok)
                            .any(|e| e.file_name().to_string_lossy().starts_with(start))
                    })
                    .unwrap_or(false)
            } else {
                full.exists()
            };
            if !exists {
                problems.push(format!("`{found}` does not exist in the repository"));
            }
        }
        problems
    }
}

/// The anchors of a Markdown file's headings, as GitHub makes them:
/// lower case, punctuation dropped, spaces turned into hyphens, and `-1`,
/// `-2`, ... after a repeated one.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let slug = slug(line.trim_start_matches('#'));
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn readme_and_docs_agree_with_the_program_and_the_repository() {
    let mut checker = Checker::new(repo());
    let mut problems = Vec::new();
    let mut commands_seen = 0;
    for (name, text) in documents() {
        commands_seen += split(&text)
            .code
            .iter()
            .map(|(_, c)| commands(c).len())
            .sum::<usize>();
        problems.extend(checker.check(&name, &text));
    }
    assert!(
        commands_seen > 50,
        "only {commands_seen} ckpt commands found in the documents: the parser lost them"
    );
    assert!(
        problems.is_empty(),
        "{} problem(s) in README.md and docs/:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// The checker's own tests: each kind of problem is found.

#[test]
fn commands_are_read_from_blocks_synopses_and_inline_spans() {
    let text = "Run\n\n    ckpt sweep --engine docker \\\n        --children 1..5\n    ckpt export --engine docker|podman [--children N]\n                -o FILE [--force]\n\nand `ckpt migrate\n--link-rate 1gbit` or `ckpt sweep --help | less`; `ckpt memory pid=P ok=true`.\n";
    let parts = split(text);
    let shown: Vec<Shown> = parts.code.iter().flat_map(|(_, c)| commands(c)).collect();
    let flags: Vec<Vec<&str>> = shown
        .iter()
        .map(|s| s.flags.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        flags,
        vec![
            vec!["--engine", "--children"],
            vec!["--engine", "--children", "-o", "--force"],
            vec!["--link-rate"],
            vec!["--help"],
            vec![],
        ]
    );
    assert_eq!(shown[2].words, vec!["migrate"]);
    let quoted = commands("ckpt sweep --cmd 'redis-server --port 6379 --save \"\"' --check-cmd=\"a --b\" --seed 1 it's");
    assert_eq!(quoted[0].flags, vec!["--cmd", "--check-cmd", "--seed"]);
    assert_eq!(shown[4].words, vec!["memory"]);
    assert!(commands("cargo test -p ckpt --test docs").is_empty());
}

#[test]
fn an_option_or_command_the_program_lacks_is_reported() {
    let mut checker = Checker::new(repo());
    let text = "    ckpt sweep --children 1 --no-such-flag\n    ckpt gc --json\n    ckpt swep --children 1\n    ckpt CMD --help\n\n`ckpt export -o x.tar --force --json` and `ckpt report DIR --output OUT`.\n";
    let problems = checker.check("docs/example.md", text);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("docs/example.md:1: `ckpt sweep` has no option --no-such-flag"));
    assert!(problems[1].contains("`ckpt gc` has no option --json"));
    assert!(problems[2].contains("`ckpt swep ...`: no such command"));
}

#[test]
fn broken_links_and_missing_paths_are_reported() {
    let checker = Checker::new(repo());
    let mut problems = checker.check_links(
        "docs/example.md",
        "[a](sweep.md) [b](sweep.md#the-plan) [c](nope.md) [d](sweep.md#no-such-heading) [e](../docs/criu-\nlazy-pages.md) [f](https://example.org/x)",
    );
    problems.extend(checker.check_paths(
        "docs/results/seed and docs/results/no-such-run, ./scripts/run, scripts/no-such-script, scripts/patches/criu-<version>-*.patch.",
    ));
    assert_eq!(problems.len(), 5, "{problems:#?}");
    assert!(problems[0].contains("`nope.md`: no such file"));
    assert!(problems[1].contains("no such heading"));
    assert!(problems[2].contains("broken across lines"));
    assert!(problems[3].contains("`docs/results/no-such-run` does not exist"));
    assert!(problems[4].contains("`scripts/no-such-script` does not exist"));
    let problems = checker.check_paths("scripts/patches/nothing-<x>");
    assert_eq!(problems.len(), 1, "{problems:#?}");
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    let text = "# Title\n## The sweep against the seed's method: `scripts/bench-sweep`\n## containerd's \"content already exists\" on restore\n```\n# not a heading\n```\n## Title\n";
    let found = anchors(text);
    for a in [
        "title",
        "the-sweep-against-the-seeds-method-scriptsbench-sweep",
        "containerds-content-already-exists-on-restore",
        "title-1",
    ] {
        assert!(found.contains(a), "{a} missing from {found:?}");
    }
    assert!(!found.contains("not-a-heading"));
}
