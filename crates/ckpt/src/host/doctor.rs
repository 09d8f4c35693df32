//! `ckpt doctor`: every check of the environment, each with the fix for
//! its failure. The same checks guard `demo` and `sweep` before they start,
//! so a broken set-up is refused up front rather than after an hour.

use std::io::Read;
use std::process::Command;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::engine::moby::DockerEngine;
use crate::model::EngineKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    /// What was found (a version, a count, the error).
    pub detail: String,
    /// What to do when it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Engines that need this check to pass.
    pub needed_by: Vec<EngineKind>,
}

/// Every engine needs it.
fn all(_: EngineKind) -> bool {
    true
}

impl Check {
    /// A failure is fatal (Fail) when the default engine needs the check,
    /// a warning otherwise.
    fn new(
        name: &'static str,
        needs: fn(EngineKind) -> bool,
        outcome: Result<String, (String, String)>,
    ) -> Check {
        let needed_by: Vec<EngineKind> =
            EngineKind::ALL.into_iter().filter(|e| needs(*e)).collect();
        let required = needed_by.contains(&EngineKind::ALL[0]);
        let (status, detail, fix) = match outcome {
            Ok(detail) => (Status::Ok, detail, None),
            Err((detail, fix)) if required => (Status::Fail, detail, Some(fix)),
            Err((detail, fix)) => (Status::Warn, detail, Some(fix)),
        };
        Check {
            name,
            status,
            detail,
            fix,
            needed_by,
        }
    }
}

const SETUP_FIX: &str = "run scripts/setup as root";

/// Runs every check. Never fails: a failure is a check's result.
pub async fn run_all() -> Vec<Check> {
    vec![
        Check::new("kernel", all, kernel_check()),
        Check::new("criu", all, criu_version()),
        Check::new("criu check", all, criu_check()),
        docker_check().await,
        Check::new(
            "runc",
            EngineKind::uses_runc,
            tool_version("runc", &["--version"]),
        ),
        Check::new(
            "podman",
            |e| e == EngineKind::Podman,
            tool_version("podman", &["--version"]),
        ),
        Check::new("workload binary", all, workload_check()),
        // Only `ckpt migrate --method lazy` needs it: a warning, not a failure.
        Check::new("lazy pages", |_| false, lazy_pages_check()),
        // Only a user's program (and --tcp-established) needs it: ckpt's
        // own workload holds no socket. `require_sockets` guards those.
        Check::new("sockets", |_| false, crate::host::sockets::check()),
    ]
}

/// Refuses, before anything starts, a run of a user's program (which
/// almost always holds sockets) when CRIU here cannot dump TCP sockets.
pub fn require_sockets(why: &str) -> Result<()> {
    match crate::host::sockets::check() {
        Ok(_) => Ok(()),
        Err((detail, fix)) => bail!("{why} needs CRIU to checkpoint sockets: {detail} -> {fix}"),
    }
}

/// Whether each engine has everything it needs, from the checks.
pub(crate) fn engine_readiness(checks: &[Check]) -> Vec<(EngineKind, Vec<&'static str>)> {
    EngineKind::ALL
        .into_iter()
        .map(|engine| {
            let missing = checks
                .iter()
                .filter(|c| c.needed_by.contains(&engine) && c.status != Status::Ok)
                .map(|c| c.name)
                .collect();
            (engine, missing)
        })
        .collect()
}

/// Refuses, before anything starts, engines whose checks fail: one error
/// naming each failure with its fix.
pub async fn require_engines(engines: &[EngineKind]) -> Result<()> {
    let failed: Vec<Check> = run_all()
        .await
        .into_iter()
        .filter(|c| c.status != Status::Ok && c.needed_by.iter().any(|e| engines.contains(e)))
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = failed
        .iter()
        .map(|c| {
            format!(
                "{}: {} -> {}",
                c.name,
                c.detail,
                c.fix.as_deref().unwrap_or("")
            )
        })
        .collect();
    bail!(
        "the environment is not ready for {} ({}); `ckpt doctor` shows every check",
        engines
            .iter()
            .map(|e| e.name())
            .collect::<Vec<_>>()
            .join(", "),
        lines.join("; ")
    )
}

/// CONFIG_CHECKPOINT_RESTORE, read from /proc/config.gz or /boot/config-*.
fn kernel_check() -> Result<String, (String, String)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let config = read_kernel_config(&release);
    match config.as_deref().map(checkpoint_restore_setting) {
        Some(Some(true)) => Ok(format!("{release}, CONFIG_CHECKPOINT_RESTORE=y")),
        Some(_) => Err((
            format!("{release} is built without CONFIG_CHECKPOINT_RESTORE"),
            "use a kernel built with CONFIG_CHECKPOINT_RESTORE=y".into(),
        )),
        // No config to read is common; `criu check` still tests the kernel.
        None => Ok(format!(
            "{release} (no kernel config readable; criu check decides)"
        )),
    }
}

fn read_kernel_config(release: &str) -> Option<String> {
    if let Ok(file) = std::fs::File::open("/proc/config.gz") {
        let mut text = String::new();
        if flate2::read::GzDecoder::new(file)
            .read_to_string(&mut text)
            .is_ok()
        {
            return Some(text);
        }
    }
    std::fs::read_to_string(format!("/boot/config-{release}")).ok()
}

/// Some(true) for `=y`, Some(false) when absent or off.
pub(crate) fn checkpoint_restore_setting(config: &str) -> Option<bool> {
    Some(
        config
            .lines()
            .any(|l| l.trim() == "CONFIG_CHECKPOINT_RESTORE=y"),
    )
}

fn run_tool(program: &str, args: &[&str]) -> Result<(bool, String), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program} not found ({e})"))?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok((output.status.success(), text))
}

fn tool_version(program: &str, args: &[&str]) -> Result<String, (String, String)> {
    match run_tool(program, args) {
        Ok((true, text)) => Ok(text.lines().next().unwrap_or("").trim().to_string()),
        Ok((false, text)) => Err((text.trim().to_string(), SETUP_FIX.into())),
        Err(e) => Err((e, SETUP_FIX.into())),
    }
}

/// `Version: 4.1.1` -> (4, 1).
pub(crate) fn parse_criu_version(text: &str) -> Option<(u32, u32)> {
    let version = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))?;
    let mut parts = version.trim().split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn criu_version() -> Result<String, (String, String)> {
    let text = match run_tool("criu", &["--version"]) {
        Ok((_, text)) => text,
        Err(e) => return Err((e, format!("{SETUP_FIX} (it builds CRIU 4.1.1)"))),
    };
    match parse_criu_version(&text) {
        Some((major, minor)) if major >= 4 => Ok(format!("CRIU {major}.{minor}")),
        Some((major, minor)) => Err((
            format!("CRIU {major}.{minor} is too old for kernels >= 6.13"),
            format!("install CRIU >= 4.1: {SETUP_FIX}"),
        )),
        None => Err((
            format!("unrecognised `criu --version` output: {}", text.trim()),
            SETUP_FIX.into(),
        )),
    }
}

fn criu_check() -> Result<String, (String, String)> {
    let (ok, text) = run_tool("criu", &["check"]).map_err(|e| (e, SETUP_FIX.to_string()))?;
    if ok && text.contains("Looks good") {
        return Ok("Looks good.".into());
    }
    Err(explain_criu_check(&text))
}

/// The detail and fix for a failed `criu check`.
pub(crate) fn explain_criu_check(output: &str) -> (String, String) {
    let last = output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.contains("RLIMIT_NOFILE"))
        .unwrap_or("no output")
        .trim()
        .to_string();
    if output.contains("vDSO") {
        (
            format!("criu check fails on the vDSO ({last})"),
            format!("this kernel needs CRIU >= 4.1: {SETUP_FIX}"),
        )
    } else {
        (
            format!("criu check fails: {last}"),
            format!("see `criu check` output; {SETUP_FIX}"),
        )
    }
}

/// Where scripts/setup records the CRIU it built and the patches it carries.
const CRIU_PATCH_MARKER: &str = "/usr/local/share/ckpt/criu-patches";
/// The patch that lets CRIU's lazy page server work without
/// CAP_SYS_RESOURCE (docs/criu-lazy-pages.md).
const LAZY_PATCH: &str = "criu-4.1.1-lazy-pipe-size.patch";

/// Lazy (post-copy) migration: userfaultfd with non-cooperative events,
/// and a CRIU whose page server gets a pipe it can use. An unpatched CRIU
/// 4.1.1 asks for a 4 MiB pipe, refused past fs.pipe-max-size without
/// CAP_SYS_RESOURCE, and then fails ("page-pipe: splice: -1: Bad file
/// descriptor").
fn lazy_pages_check() -> Result<String, (String, String)> {
    let (ok, text) = run_tool("criu", &["check", "--feature", "uffd-noncoop"])
        .map_err(|e| (e, SETUP_FIX.to_string()))?;
    if !ok || !text.contains("is supported") {
        return Err((
            "criu check --feature uffd-noncoop fails".into(),
            "lazy migration needs a kernel with CONFIG_USERFAULTFD (Linux >= 4.11)".into(),
        ));
    }
    let pipe_max = read_number("/proc/sys/fs/pipe-max-size").unwrap_or(0);
    if has_sys_resource() || pipe_max >= 4 << 20 {
        return Ok(format!(
            "uffd-noncoop supported; fs.pipe-max-size {pipe_max}: any CRIU 4.x will do"
        ));
    }
    let situation = format!("fs.pipe-max-size {pipe_max} and no CAP_SYS_RESOURCE");
    if criu_carries_lazy_patch() {
        Ok(format!(
            "uffd-noncoop supported; {situation}, and CRIU carries {LAZY_PATCH}"
        ))
    } else {
        Err((
            format!("{situation}, and the installed CRIU lacks {LAZY_PATCH}: lazy migration fails"),
            format!(
                "{SETUP_FIX} (it builds CRIU with the patch), or raise fs.pipe-max-size to 4194304"
            ),
        ))
    }
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// CAP_SYS_RESOURCE (bit 24) in this process's effective capabilities.
fn has_sys_resource() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

/// Whether setup's marker lists the patch and describes the criu on PATH
/// (by its checksum: a criu installed later over it does not count).
fn criu_carries_lazy_patch() -> bool {
    let Ok(marker) = std::fs::read_to_string(CRIU_PATCH_MARKER) else {
        return false;
    };
    let listed = marker
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(LAZY_PATCH));
    let recorded = marker
        .lines()
        .find_map(|l| l.strip_prefix("criu "))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("sha256=")));
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("criu"))
            .find(|p| p.is_file())
    });
    let actual = on_path.and_then(|p| match run_tool("sha256sum", &[&p.to_string_lossy()]) {
        Ok((true, out)) => out.split_whitespace().next().map(str::to_string),
        _ => None,
    });
    listed && recorded.is_some() && recorded == actual.as_deref()
}

async fn docker_check() -> Check {
    let outcome = match DockerEngine::connect_any().await {
        Err(e) => Err((format!("{e:#}"), "start dockerd: scripts/setup".to_string())),
        Ok((_, facts)) if !facts.experimental => Err((
            format!("Docker {} (API {}) runs without experimental mode", facts.version, facts.api_version),
            "set \"experimental\": true in /etc/docker/daemon.json and restart dockerd (scripts/setup)".to_string(),
        )),
        Ok((_, facts)) => Ok(format!(
            "Docker {} (API {}), experimental on",
            facts.version, facts.api_version
        )),
    };
    Check::new("docker", |e| e == EngineKind::Docker, outcome)
}

fn workload_check() -> Result<String, (String, String)> {
    crate::workload::locate_binary()
        .map(|p| p.display().to_string())
        .map_err(|e| (format!("{e:#}"), "run scripts/build".into()))
}

/// Human-readable lines, one per check.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let status = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        out.push_str(&format!("{status} {:<16} {}", c.name, c.detail));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("\n     {:<16} fix: {fix}", ""));
        }
        out.push('\n');
    }
    for (engine, missing) in engine_readiness(checks) {
        let verdict = if missing.is_empty() {
            "ready".to_string()
        } else {
            format!("NOT ready (needs: {})", missing.join(", "))
        };
        out.push_str(&format!("engine {engine:<10} {verdict}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_criu_versions() {
        assert_eq!(parse_criu_version("Version: 4.1.1\n"), Some((4, 1)));
        assert_eq!(
            parse_criu_version("Version: 3.17.1\nGitID: x"),
            Some((3, 17))
        );
        assert_eq!(parse_criu_version("garbage"), None);
    }

    #[test]
    fn explains_vdso_failure() {
        let out = "Error (criu/vdso.c:123): vdso: Unexpected rt vDSO area bounds\nLooks bad.";
        let (detail, fix) = explain_criu_check(out);
        assert!(detail.contains("vDSO"), "{detail}");
        assert!(fix.contains("CRIU >= 4.1"), "{fix}");
    }

    #[test]
    fn reads_checkpoint_restore_setting() {
        assert_eq!(
            checkpoint_restore_setting("CONFIG_X=y\nCONFIG_CHECKPOINT_RESTORE=y\n"),
            Some(true)
        );
        assert_eq!(
            checkpoint_restore_setting("# CONFIG_CHECKPOINT_RESTORE is not set\n"),
            Some(false)
        );
    }
}
