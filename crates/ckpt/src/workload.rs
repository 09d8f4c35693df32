//! The in-container workload programs (crate `ckpt-workload`): where the
//! static binary is, the build context of its `FROM scratch` image, and the
//! parsing of the lines it prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Path of the workload binary inside the image.
pub const BINARY_IN_IMAGE: &str = "/ckpt-workload";

/// Finds the statically linked workload binary: `$CKPT_WORKLOAD`, next to
/// the ckpt executable, or where `scripts/build` puts it in a checkout.
pub fn locate_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("CKPT_WORKLOAD") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!(
            "CKPT_WORKLOAD points to {}, which is not a file: build it with scripts/build",
            path.display()
        );
    }
    let exe = std::env::current_exe().context("cannot find the ckpt executable's path")?;
    let candidates = binary_candidates(&exe);
    candidates.iter().find(|p| p.is_file()).cloned().with_context(|| {
        format!(
            "the static workload binary 'ckpt-workload' was not found (looked at {}): run scripts/build, or set CKPT_WORKLOAD",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

fn binary_candidates(exe: &Path) -> Vec<PathBuf> {
    let dir = exe.parent().unwrap_or(Path::new("."));
    // target/{debug,release}/ckpt (or target/debug/deps/test-binary) ->
    // target/x86_64-unknown-linux-gnu/release/ckpt-workload
    let mut out = vec![dir.join("ckpt-workload")];
    for up in dir.ancestors().take(3) {
        out.push(up.join("x86_64-unknown-linux-gnu/release/ckpt-workload"));
    }
    out
}

/// A tar build context: a Dockerfile and the workload binary.
pub fn build_context(binary: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(binary)
        .with_context(|| format!("cannot read the workload binary {}", binary.display()))?;
    let dockerfile = format!(
        "FROM scratch\nCOPY ckpt-workload {BINARY_IN_IMAGE}\nENTRYPOINT [\"{BINARY_IN_IMAGE}\"]\n"
    );
    let mut tar = tar::Builder::new(Vec::new());
    append(&mut tar, "Dockerfile", dockerfile.as_bytes(), 0o644)?;
    append(&mut tar, "ckpt-workload", &bytes, 0o755)?;
    Ok(tar.into_inner()?)
}

fn append(tar: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8], mode: u32) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_cksum();
    tar.append_data(&mut header, name, data)?;
    Ok(())
}

/// One line of the workload protocol: `ckpt <kind> key=value ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub kind: String,
    pub fields: BTreeMap<String, String>,
}

impl Line {
    /// Parses a protocol line; other output (and noise) gives `None`.
    pub fn parse(text: &str) -> Option<Line> {
        let mut words = text.split_whitespace();
        if words.next()? != "ckpt" {
            return None;
        }
        let kind = words.next()?.to_string();
        let fields = words
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Line { kind, fields })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    pub fn number<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.get(key)?.parse().ok()
    }
}

/// True for the workload's `ready` line.
pub fn is_ready(text: &str) -> bool {
    Line::parse(text).is_some_and(|l| l.kind == "ready")
}

/// True for a Fibonacci line.
pub fn is_fib(text: &str) -> bool {
    Line::parse(text).is_some_and(|l| l.kind == "fib")
}

/// A Fibonacci line's index and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FibStep {
    pub index: u64,
    pub value: u128,
}

pub fn fib_steps(lines: &[String]) -> Vec<FibStep> {
    lines
        .iter()
        .filter_map(|l| Line::parse(l))
        .filter(|l| l.kind == "fib")
        .filter_map(|l| {
            Some(FibStep {
                index: l.number("index")?,
                value: l.number("value")?,
            })
        })
        .collect()
}

/// The verdict on a restored Fibonacci printer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Continuity {
    /// The first number after the restore follows the last one before.
    Continues {
        last_before: FibStep,
        first_after: FibStep,
    },
    /// The sequence started over (index 0 after the restore).
    Restarted {
        last_before: FibStep,
        first_after: FibStep,
    },
    /// Numbers were skipped or repeated.
    Broken {
        last_before: FibStep,
        first_after: FibStep,
    },
    /// Not enough output to judge.
    Unknown(String),
}

impl Continuity {
    pub fn holds(&self) -> bool {
        matches!(self, Continuity::Continues { .. })
    }
}

/// Judges continuity from the steps printed before the checkpoint and the
/// first step printed after the restore. Checks both the index and the
/// value, which must be the Fibonacci successor (with the workload's
/// wrapping addition).
pub fn continuity(before: &[FibStep], first_after: Option<FibStep>) -> Continuity {
    let (Some(&last), Some(first)) = (before.last(), first_after) else {
        return Continuity::Unknown(
            "no Fibonacci line before the checkpoint or after the restore".into(),
        );
    };
    let expected_value = match before.len() {
        1 => 1, // F(0) = 0 is followed by F(1) = 1
        n => before[n - 2].value.wrapping_add(last.value),
    };
    let (last_before, first_after) = (last, first);
    if first.index == last.index + 1 && first.value == expected_value {
        Continuity::Continues {
            last_before,
            first_after,
        }
    } else if first.index == 0 && last.index != 0 {
        Continuity::Restarted {
            last_before,
            first_after,
        }
    } else {
        Continuity::Broken {
            last_before,
            first_after,
        }
    }
}

/// Arguments for the Fibonacci printer.
pub fn fib_args(interval_ms: u64) -> Vec<String> {
    vec![
        "fib".into(),
        "--interval-ms".into(),
        interval_ms.to_string(),
    ]
}

/// Arguments for the forker.
pub fn forker_args(children: u32, interval_ms: u64) -> Vec<String> {
    vec![
        "forker".into(),
        "--children".into(),
        children.to_string(),
        "--interval-ms".into(),
        interval_ms.to_string(),
    ]
}

/// The pids a forker announced in its ready line (parent first).
pub fn ready_pids(line: &str) -> Option<Vec<u32>> {
    let parsed = Line::parse(line)?;
    parsed
        .get("pids")?
        .split(',')
        .map(|p| p.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(values: &[(u64, u128)]) -> Vec<FibStep> {
        values
            .iter()
            .map(|&(index, value)| FibStep { index, value })
            .collect()
    }

    #[test]
    fn parses_protocol_lines_and_ignores_noise() {
        let line = Line::parse("ckpt fib index=7 value=13").unwrap();
        assert_eq!(line.kind, "fib");
        assert_eq!(line.number::<u64>("index"), Some(7));
        assert_eq!(Line::parse("hello world"), None);
        assert_eq!(Line::parse(""), None);
        assert!(is_ready("ckpt ready workload=fib pid=1"));
        assert!(!is_ready("ckpt fib index=0 value=0"));
    }

    #[test]
    fn continuity_accepts_successor_only() {
        let before = steps(&[(3, 2), (4, 3), (5, 5)]);
        assert!(continuity(&before, Some(FibStep { index: 6, value: 8 })).holds());
        assert!(matches!(
            continuity(&before, Some(FibStep { index: 0, value: 0 })),
            Continuity::Restarted { .. }
        ));
        // A gap, a repeat, and a right index with a wrong value.
        for bad in [(7, 13), (5, 5), (6, 9)] {
            let verdict = continuity(
                &before,
                Some(FibStep {
                    index: bad.0,
                    value: bad.1,
                }),
            );
            assert!(matches!(verdict, Continuity::Broken { .. }), "{bad:?}");
        }
        assert!(matches!(continuity(&[], None), Continuity::Unknown(_)));
    }

    #[test]
    fn continuity_from_first_number() {
        let before = steps(&[(0, 0)]);
        assert!(continuity(&before, Some(FibStep { index: 1, value: 1 })).holds());
    }

    #[test]
    fn reads_pids_from_ready_line() {
        let line = "ckpt ready workload=forker children=2 pids=1,7,8";
        assert_eq!(ready_pids(line), Some(vec![1, 7, 8]));
        assert_eq!(ready_pids("ckpt ready workload=forker pids=1,x"), None);
    }

    #[test]
    fn build_context_holds_dockerfile_and_binary() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("ckpt-workload");
        std::fs::write(&bin, b"\x7fELF").unwrap();
        let tar_bytes = build_context(&bin).unwrap();
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["Dockerfile", "ckpt-workload"]);
    }
}
