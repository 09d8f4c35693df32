//! `ckpt inspect`: what a checkpoint holds. Loads the files of a checkpoint
//! directory, a checkpoint archive (tar, gzip or zstd, read as a stream:
//! never unpacked to disk) or a Docker container's checkpoint, hands them to
//! the `criu-image` decoder, and renders a tree (the summary, the sockets,
//! the process tree) or JSON.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use criu_image::{needs_content, Checkpoint, MemFiles, Socket};
use serde::Serialize;

/// Largest image file read into memory. CRIU's metadata images are small;
/// anything bigger is either pages (not read) or not a CRIU image.
const MAX_METADATA_BYTES: u64 = 256 << 20;

/// Container metadata carried by a checkpoint archive (Podman's export,
/// CRI-O's, or `ckpt export`'s).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ContainerInfo {
    pub engine: String,
    pub name: Option<String>,
    pub id: Option<String>,
    pub image: Option<String>,
    pub runtime: Option<String>,
    pub created: Option<String>,
    pub rootfs_diff_bytes: Option<u64>,
}

/// Everything `inspect` shows.
#[derive(Debug, Serialize)]
pub struct Inspection {
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerInfo>,
    pub checkpoint: Checkpoint,
}

/// Loads and decodes what `target` names: a directory, an archive, or a
/// Docker container (name or id) with a checkpoint.
pub async fn inspect(
    target: &str,
    checkpoint_name: Option<&str>,
    work_dir: Option<&Path>,
) -> Result<Inspection> {
    let path = Path::new(target);
    let (mut files, container, source) = if path.is_dir() {
        (load_dir(path)?, None, path.display().to_string())
    } else if path.is_file() {
        let (files, info) = load_archive(path)?;
        (files, Some(info), path.display().to_string())
    } else {
        let dir = docker_checkpoint_dir(target, checkpoint_name).await?;
        let info = ContainerInfo {
            engine: "docker".into(),
            name: Some(target.to_string()),
            ..Default::default()
        };
        (load_dir(&dir)?, Some(info), dir.display().to_string())
    };
    if let Some(work) = work_dir {
        add_statistics(&mut files, work)?;
    }
    let checkpoint = Checkpoint::decode(&files)
        .with_context(|| format!("decoding the checkpoint in {source}"))?;
    Ok(Inspection {
        source,
        container,
        checkpoint,
    })
}

/// Reads a checkpoint directory: metadata images whole, pages by size.
pub(crate) fn load_dir(dir: &Path) -> Result<MemFiles> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the directory {}", dir.display()))?;
    let mut files = MemFiles::default();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let content = if needs_content(&name) && meta.len() <= MAX_METADATA_BYTES {
            let path = entry.path();
            Some(std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?)
        } else {
            None
        };
        files.insert(&name, content, meta.len());
    }
    if files.size("pstree.img").is_none() {
        bail!(
            "{} is not a CRIU checkpoint: it has no pstree.img (give a checkpoint directory, a checkpoint archive or a Docker container)",
            dir.display()
        );
    }
    Ok(files)
}

/// Adds `stats-dump` and `stats-restore` from CRIU's work directory (runc's
/// --work-path, criu's -W), which is often not the image directory.
fn add_statistics(files: &mut MemFiles, work: &Path) -> Result<()> {
    let mut found = false;
    for name in ["stats-dump", "stats-restore"] {
        let path = work.join(name);
        if let Ok(bytes) = std::fs::read(&path) {
            let size = bytes.len() as u64;
            files.insert(name, Some(bytes), size);
            found = true;
        }
    }
    if !found {
        bail!(
            "{} holds neither stats-dump nor stats-restore",
            work.display()
        );
    }
    Ok(())
}

/// Opens an archive, whatever its compression (zstd, gzip or none).
pub(crate) fn archive_reader(path: &Path) -> Result<Box<dyn Read>> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic)?;
    let file = BufReader::new(File::open(path)?);
    Ok(match &magic[..n] {
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(
            ruzstd::streaming_decoder::StreamingDecoder::new(file).map_err(|e| {
                anyhow::anyhow!("{} is not a valid zstd archive: {e}", path.display())
            })?,
        ),
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(file)),
        _ => Box::new(file),
    })
}

/// Reads a checkpoint archive (Podman, CRI-O, `ckpt export`) entry by entry: the checkpoint's metadata
/// images and the container's configuration are kept in memory, everything
/// else (memory pages, the root filesystem diff) is only measured.
pub(crate) fn load_archive(path: &Path) -> Result<(MemFiles, ContainerInfo)> {
    let mut archive = tar::Archive::new(archive_reader(path)?);
    let mut files = MemFiles::default();
    let mut info = ContainerInfo {
        engine: "podman".into(),
        ..Default::default()
    };
    let bad = || format!("{} is not a readable checkpoint archive", path.display());
    for entry in archive.entries().with_context(bad)? {
        let mut entry = entry.with_context(bad)?;
        let size = entry.header().size().with_context(bad)?;
        let name = entry
            .path()
            .with_context(bad)?
            .to_string_lossy()
            .into_owned();
        let image_name = name.strip_prefix("checkpoint/").map(str::to_string);
        let wanted = match (&image_name, name.as_str()) {
            (Some(img), _) => needs_content(img),
            (None, "config.dump" | "spec.dump" | "stats-dump" | "stats-restore") => true,
            _ => false,
        };
        if name == "rootfs-diff.tar" {
            info.rootfs_diff_bytes = Some(size);
        }
        let content = if wanted && size <= MAX_METADATA_BYTES {
            let mut bytes = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut bytes)
                .with_context(|| format!("reading {name} from {}", path.display()))?;
            Some(bytes)
        } else {
            None
        };
        match (image_name, name.as_str()) {
            (Some(img), _) if !img.is_empty() => files.insert(&img, content, size),
            (None, "stats-dump" | "stats-restore") => files.insert(&name, content, size),
            (None, "config.dump") => {
                if let Some(bytes) = content {
                    read_podman_config(&bytes, &mut info);
                }
            }
            (None, "spec.dump") => {
                if let Some(engine) = content.as_deref().and_then(engine_of_spec) {
                    info.engine = engine;
                }
            }
            _ => {}
        }
    }
    if files.size("pstree.img").is_none() {
        bail!(
            "{} holds no checkpoint/pstree.img: it is not a checkpoint archive (Podman's, CRI-O's or ckpt export's)",
            path.display()
        );
    }
    Ok((files, info))
}

/// Which engine wrote an archive, from its spec.dump's annotations: ckpt's
/// own, else the manager Podman and CRI-O name (as checkpointctl reads it).
fn engine_of_spec(bytes: &[u8]) -> Option<String> {
    let spec: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let annotations = spec.get("annotations")?;
    let text = |key: &str| annotations.get(key).and_then(|v| v.as_str());
    if let Some(engine) = text(crate::model::ARCHIVE_ENGINE_ANNOTATION) {
        return Some(engine.to_string());
    }
    match text("io.container.manager") {
        Some("libpod") => Some("podman".into()),
        Some("cri-o") => Some("cri-o".into()),
        _ => None,
    }
}

/// Picks the fields checkpointctl shows from Podman's config.dump.
fn read_podman_config(bytes: &[u8], info: &mut ContainerInfo) {
    let Ok(config) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return;
    };
    let text = |key: &str| config.get(key).and_then(|v| v.as_str()).map(str::to_string);
    info.id = text("id");
    info.name = text("name");
    info.image = text("rootfsImageName");
    info.runtime = text("runtime");
    info.created = text("createdTime");
}

/// The directory of a Docker container's checkpoint: the one named, or the
/// most recent.
async fn docker_checkpoint_dir(container: &str, checkpoint: Option<&str>) -> Result<PathBuf> {
    let (engine, _) = crate::engine::moby::DockerEngine::connect_any()
        .await
        .with_context(|| format!("'{container}' is neither a file nor a directory, and Docker cannot be asked about it"))?;
    let dir = engine.checkpoints_dir_of(container).await?;
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&dir)
        .with_context(|| {
            format!(
                "container {container} has no checkpoints ({} is not readable)",
                dir.display()
            )
        })?
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter(|e| checkpoint.is_none_or(|c| e.file_name() == c))
        .map(|e| {
            (
                e.metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH),
                e.path(),
            )
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, path)) => Ok(path),
        None => match checkpoint {
            Some(c) => bail!("container {container} has no checkpoint named {c}"),
            None => bail!("container {container} has no checkpoint: create one with `docker checkpoint create`"),
        },
    }
}

/// Which parts of the tree to show.
#[derive(Debug, Clone, Copy, Default)]
pub struct Parts {
    pub ps_tree: bool,
    pub mem: bool,
    pub files: bool,
    pub stats: bool,
    pub sockets: bool,
}

impl Parts {
    fn any(self) -> bool {
        self.ps_tree || self.mem || self.files || self.stats || self.sockets
    }

    /// No selection means the overview: tree, sockets and statistics.
    pub(crate) fn or_default(self) -> Parts {
        if self.any() {
            self
        } else {
            Parts {
                ps_tree: true,
                stats: true,
                sockets: true,
                ..self
            }
        }
    }
}

/// Bytes in the largest binary unit that keeps the number at or above 1,
/// as checkpointctl prints them: "512 B", "3.5 KiB", "1.2 MiB".
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn ms(us: u32) -> String {
    format!("{:.2} ms", f64::from(us) / 1000.0)
}

/// The human-readable tree.
pub fn render(i: &Inspection, parts: Parts) -> String {
    let parts = parts.or_default();
    let cp = &i.checkpoint;
    let mut out = format!("{}\n", i.source);
    let mut lines: Vec<String> = i
        .container
        .as_ref()
        .map(container_lines)
        .unwrap_or_default();
    lines.push(format!(
        "CRIU image format version: {}",
        cp.image_version.map_or("unknown".into(), |v| v.to_string())
    ));
    lines.push(format!("checkpoint size: {}", human(cp.total_bytes)));
    lines.push(format!("memory pages size: {}", human(cp.pages_bytes)));
    lines.push(format!("processes: {}", cp.processes.len()));
    if parts.stats {
        lines.push(stats_line(cp));
    }
    for line in lines {
        out.push_str(&format!("├─ {line}\n"));
    }
    let tree = parts.ps_tree || parts.mem || parts.files;
    if parts.sockets {
        render_sockets(cp, !tree, &mut out);
    }
    if tree {
        out.push_str("└─ process tree\n");
        let roots: Vec<_> = cp.roots().collect();
        for (n, root) in roots.iter().enumerate() {
            render_process(cp, root, "   ", n + 1 == roots.len(), parts, &mut out);
        }
    }
    for w in &cp.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

/// A container's facts, one per line, as checkpointctl shows them.
fn container_lines(c: &ContainerInfo) -> Vec<String> {
    let field = |k: &str, v: &Option<String>| v.as_ref().map(|v| format!("container {k}: {v}"));
    let mut facts: Vec<String> = vec![format!("container engine: {}", c.engine)];
    facts.extend(
        [
            field("name", &c.name),
            field("id", &c.id),
            field("image", &c.image),
            field("runtime", &c.runtime),
            field("created", &c.created),
            c.rootfs_diff_bytes
                .map(|b| format!("container root fs diff size: {}", human(b))),
        ]
        .into_iter()
        .flatten(),
    );
    facts
}

/// A socket's family (with a unix socket's type).
fn socket_family(s: &Socket) -> String {
    if s.family == "unix" {
        format!("unix {}", s.kind)
    } else {
        s.family.clone()
    }
}

/// A socket's local end, and its peer when connected.
fn socket_ends(s: &Socket) -> String {
    let local = s.local.as_deref().unwrap_or("unnamed");
    let peer = s
        .peer
        .as_ref()
        .map_or(String::new(), |p| format!(" peer {p}"));
    format!("{local}{peer}")
}

/// A socket without its state: family, local end, peer.
pub(crate) fn socket_name(s: &Socket) -> String {
    format!("{} {}", socket_family(s), socket_ends(s))
}

/// One socket: family, state, local end, peer, and for a TCP connection
/// whether its stream was saved.
pub(crate) fn socket_text(s: &Socket) -> String {
    let stream = if s.stream_saved {
        ", stream saved"
    } else if s.is_established_tcp() {
        ", stream not saved"
    } else {
        ""
    };
    format!(
        "{} {} {}{stream}",
        socket_family(s),
        s.state,
        socket_ends(s)
    )
}

/// The sockets section: a count, then a line per inet and unix socket.
fn render_sockets(cp: &Checkpoint, last: bool, out: &mut String) {
    let (branch, indent) = if last {
        ("└─", "   ")
    } else {
        ("├─", "│  ")
    };
    let Some(sockets) = &cp.sockets else {
        out.push_str(&format!(
            "{branch} sockets: unknown (files.img is missing or does not decode)\n"
        ));
        return;
    };
    let mut head = match sockets.entries.len() {
        0 => "sockets: none".to_string(),
        n => format!("sockets: {n}"),
    };
    if sockets.packet + sockets.netlink > 0 {
        head.push_str(&format!(
            " (and {} packet, {} netlink, not listed)",
            sockets.packet, sockets.netlink
        ));
    }
    out.push_str(&format!("{branch} {head}\n"));
    for (n, s) in sockets.entries.iter().enumerate() {
        let branch = if n + 1 == sockets.entries.len() {
            "└─"
        } else {
            "├─"
        };
        out.push_str(&format!("{indent}{branch} {}\n", socket_text(s)));
    }
}

fn stats_line(cp: &Checkpoint) -> String {
    let mut parts = Vec::new();
    if let Some(d) = &cp.dump_stats {
        parts.push(format!(
            "dump: freezing {}, frozen {}, memdump {}, memwrite {}, pages scanned {}, written {}",
            ms(d.freezing_time),
            ms(d.frozen_time),
            ms(d.memdump_time),
            ms(d.memwrite_time),
            d.pages_scanned,
            d.pages_written
        ));
    }
    if let Some(r) = &cp.restore_stats {
        parts.push(format!(
            "restore: forking {}, restore {}, pages restored {}",
            ms(r.forking_time),
            ms(r.restore_time),
            r.pages_restored.map_or("-".into(), |p| p.to_string())
        ));
    }
    if parts.is_empty() {
        "CRIU statistics: none here (CRIU writes them to its work directory, which Docker deletes; give runc's or criu's with --work-dir)".into()
    } else {
        format!("CRIU statistics: {}", parts.join("; "))
    }
}

fn render_process(
    cp: &Checkpoint,
    p: &criu_image::Process,
    indent: &str,
    last: bool,
    parts: Parts,
    out: &mut String,
) {
    let branch = if last { "└─" } else { "├─" };
    let mem = p.memory.as_ref().map_or(String::new(), |m| {
        format!(
            ", {} dumped in {} pages",
            human(m.bytes_dumped),
            m.pages_dumped
        )
    });
    let files = p
        .files
        .as_ref()
        .map_or(String::new(), |f| format!(", {} open files", f.len()));
    out.push_str(&format!(
        "{indent}{branch} [{}] {} ({}){mem}{files}\n",
        p.pid, p.command, p.state
    ));
    let child_indent = format!("{indent}{}", if last { "   " } else { "│  " });
    if parts.mem {
        for a in p.memory.iter().flat_map(|m| &m.areas) {
            out.push_str(&format!(
                "{child_indent}  mem {:012x}-{:012x} {} {:>8} dumped {} pages\n",
                a.start,
                a.end,
                a.mode,
                human(a.end.saturating_sub(a.start)),
                a.pages_dumped
            ));
        }
    }
    if parts.files {
        for f in p.files.iter().flatten() {
            out.push_str(&format!(
                "{child_indent}  fd {:>3} {}{}\n",
                f.fd,
                f.kind,
                f.path.as_ref().map_or(String::new(), |p| format!(" {p}"))
            ));
        }
    }
    let children: Vec<_> = cp.children(p.pid).collect();
    for (n, c) in children.iter().enumerate() {
        render_process(cp, c, &child_indent, n + 1 == children.len(), parts, out);
    }
}

/// JSON with only the selected parts (everything when none is selected).
pub fn to_json(i: &Inspection, parts: Parts) -> Result<String> {
    let mut value = serde_json::to_value(i)?;
    if parts.any() {
        let cp = value["checkpoint"]
            .as_object_mut()
            .context("checkpoint object")?;
        if !parts.stats {
            cp.remove("dump_stats");
            cp.remove("restore_stats");
        }
        if !parts.sockets {
            cp.remove("sockets");
        }
        if !(parts.ps_tree || parts.mem || parts.files) {
            cp.remove("processes");
        }
        for p in cp
            .get_mut("processes")
            .and_then(|v| v.as_array_mut())
            .into_iter()
            .flatten()
        {
            let p = p.as_object_mut().context("process object")?;
            if !parts.mem {
                p.remove("memory");
            }
            if !parts.files {
                p.remove("files");
            }
        }
    }
    Ok(serde_json::to_string_pretty(&value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_human_units() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(3584), "3.5 KiB");
        assert_eq!(human(5 * 1048576 / 2), "2.5 MiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }

    fn with_sockets(sockets: Option<criu_image::Sockets>) -> Inspection {
        Inspection {
            source: "cp".into(),
            container: None,
            checkpoint: Checkpoint {
                image_version: Some(2),
                criu_run_id: None,
                processes: Vec::new(),
                total_bytes: 0,
                pages_bytes: 0,
                sockets,
                dump_stats: None,
                restore_stats: None,
                warnings: Vec::new(),
            },
        }
    }

    fn socket(family: &str, state: &str, local: Option<&str>, peer: Option<&str>) -> Socket {
        Socket {
            id: 1,
            ino: 2,
            family: family.into(),
            kind: "stream",
            state: state.into(),
            local: local.map(str::to_string),
            peer: peer.map(str::to_string),
            stream_saved: false,
        }
    }

    #[test]
    fn the_sockets_section_lists_each_socket() {
        let mut saved = socket("tcp6", "ESTABLISHED", Some("[::1]:80"), Some("[::1]:5000"));
        saved.stream_saved = true;
        let sockets = criu_image::Sockets {
            entries: vec![
                socket("tcp", "LISTEN", Some("0.0.0.0:80"), None),
                saved,
                socket(
                    "tcp",
                    "ESTABLISHED",
                    Some("10.0.0.1:80"),
                    Some("10.0.0.2:1"),
                ),
                socket("unix", "ESTABLISHED", None, Some("/run/a.sock")),
            ],
            packet: 1,
            netlink: 2,
        };
        let only = Parts {
            sockets: true,
            ..Parts::default()
        };
        let text = render(&with_sockets(Some(sockets)), only);
        let expected = "\
└─ sockets: 4 (and 1 packet, 2 netlink, not listed)
   ├─ tcp LISTEN 0.0.0.0:80
   ├─ tcp6 ESTABLISHED [::1]:80 peer [::1]:5000, stream saved
   ├─ tcp ESTABLISHED 10.0.0.1:80 peer 10.0.0.2:1, stream not saved
   └─ unix stream ESTABLISHED unnamed peer /run/a.sock
";
        assert!(text.contains(expected), "{text}");
        assert!(!text.contains("process tree"), "{text}");
    }

    #[test]
    fn unknown_and_no_sockets_are_told_apart() {
        let unknown = render(&with_sockets(None), Parts::default());
        assert!(
            unknown.contains(
                "├─ sockets: unknown (files.img is missing or does not decode)\n└─ process tree"
            ),
            "{unknown}"
        );
        let none = with_sockets(Some(criu_image::Sockets::default()));
        let only = |sockets: bool| Parts {
            sockets,
            stats: true,
            ..Parts::default()
        };
        assert!(render(&none, only(true)).contains("sockets: none\n"));
        let json = |parts: Parts| -> serde_json::Value {
            serde_json::from_str(&to_json(&none, parts).unwrap()).unwrap()
        };
        let entries = &json(only(true))["checkpoint"]["sockets"]["entries"];
        assert_eq!(entries, &serde_json::json!([]));
        let without = json(only(false));
        assert!(without["checkpoint"].get("sockets").is_none(), "{without}");
    }

    #[test]
    fn a_directory_without_pstree_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("something.img"), b"x").unwrap();
        let err = load_dir(dir.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a CRIU checkpoint"),
            "{err:#}"
        );
    }

    #[test]
    fn the_engine_comes_from_the_spec() {
        let ours = br#"{"annotations":{"io.ckpt.engine":"docker","io.container.manager":"x"}}"#;
        assert_eq!(engine_of_spec(ours).as_deref(), Some("docker"));
        let podman = br#"{"annotations":{"io.container.manager":"libpod"}}"#;
        assert_eq!(engine_of_spec(podman).as_deref(), Some("podman"));
        let crio = br#"{"annotations":{"io.container.manager":"cri-o"}}"#;
        assert_eq!(engine_of_spec(crio).as_deref(), Some("cri-o"));
        assert_eq!(engine_of_spec(br#"{"ociVersion":"1"}"#), None);
        assert_eq!(engine_of_spec(b"garbage"), None);
    }

    #[test]
    fn an_archive_that_is_not_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tar.gz");
        std::fs::write(&path, [0x1f, 0x8b, 1, 2, 3]).unwrap();
        assert!(load_archive(&path).is_err());
        std::fs::write(&path, b"plain text, not a tar").unwrap();
        assert!(load_archive(&path).is_err());
    }
}
