//! The checkpoint archive in the layout Podman and CRI-O write and
//! checkpointctl reads: `checkpoint/` (CRIU's images), `config.dump` and
//! `spec.dump` (JSON that names the container and its engine), and
//! `stats-dump` when CRIU left its statistics. Pure: it turns what the
//! engine left into tar entries, and knows nothing of engines.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

pub use crate::model::ARCHIVE_ENGINE_ANNOTATION as ENGINE_ANNOTATION;
/// The annotation checkpointctl takes a non-Podman, non-CRI-O container's
/// name from (containerd's CRI plugin sets it).
pub const CRI_NAME_ANNOTATION: &str = "io.kubernetes.cri.container-name";

/// How the archive's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// a plain tar: fastest to write and to restore from
    None,
    /// gzip at flate2's fast level: every reader (Podman, CRI-O,
    /// checkpointctl, tar) takes it without a plug-in
    Gzip,
}

/// What `config.dump` and `spec.dump` say about the container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerFacts {
    /// "docker", "runc": ckpt's name of the engine.
    pub engine: String,
    pub id: String,
    pub name: String,
    /// The image the container was made from (a runc bundle has none).
    pub image: Option<String>,
    /// The OCI runtime that ran it ("runc").
    pub runtime: String,
    pub created: chrono::DateTime<chrono::Utc>,
    pub checkpointed: chrono::DateTime<chrono::Utc>,
}

/// `config.dump`: the fields of Podman's container configuration that
/// checkpointctl reads (its `ContainerConfig`), with Podman's JSON names.
#[derive(Debug, Serialize)]
struct ConfigDump<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(rename = "rootfsImageName", skip_serializing_if = "Option::is_none")]
    rootfs_image_name: Option<&'a str>,
    runtime: &'a str,
    #[serde(rename = "createdTime")]
    created_time: String,
    #[serde(rename = "checkpointedTime")]
    checkpointed_time: String,
    restored: bool,
}

/// The bytes of `config.dump`.
pub fn config_dump(facts: &ContainerFacts) -> Result<Vec<u8>> {
    let dump = ConfigDump {
        id: &facts.id,
        name: &facts.name,
        rootfs_image_name: facts.image.as_deref(),
        runtime: &facts.runtime,
        // Go's time.Time reads RFC 3339.
        created_time: facts.created.to_rfc3339(),
        checkpointed_time: facts.checkpointed.to_rfc3339(),
        restored: false,
    };
    Ok(serde_json::to_vec_pretty(&dump)?)
}

/// The bytes of `spec.dump`: the container's OCI runtime spec when the
/// engine let ckpt read it (`spec`), else an empty one, with the
/// annotations that name the container for checkpointctl and ckpt.
pub fn spec_dump(spec: Option<&[u8]>, facts: &ContainerFacts) -> Result<Vec<u8>> {
    let mut value: serde_json::Value = match spec {
        Some(bytes) => {
            serde_json::from_slice(bytes).context("the container's OCI runtime spec is not JSON")?
        }
        None => serde_json::json!({ "ociVersion": "1.0.2" }),
    };
    let object = value
        .as_object_mut()
        .context("the container's OCI runtime spec is not a JSON object")?;
    let annotations = object
        .entry("annotations")
        .or_insert_with(|| serde_json::json!({}));
    if annotations.is_null() {
        *annotations = serde_json::json!({});
    }
    let annotations = annotations
        .as_object_mut()
        .context("the spec's annotations are not a JSON object")?;
    annotations.insert(ENGINE_ANNOTATION.into(), facts.engine.clone().into());
    annotations.insert(CRI_NAME_ANNOTATION.into(), facts.name.clone().into());
    Ok(serde_json::to_vec_pretty(&value)?)
}

/// Writes the archive into `out`: the two dumps, `stats-dump` when given,
/// and every file of `images` under `checkpoint/`. Returns `out` so the
/// caller can finish and sync it.
pub fn write<W: Write>(
    out: W,
    compression: Compression,
    images: &Path,
    config: &[u8],
    spec: &[u8],
    stats_dump: Option<&[u8]>,
) -> Result<W> {
    if !images.join("pstree.img").is_file() {
        bail!(
            "{} holds no pstree.img: it is not a CRIU checkpoint",
            images.display()
        );
    }
    match compression {
        Compression::None => fill(tar::Builder::new(out), images, config, spec, stats_dump),
        Compression::Gzip => {
            let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
            let gz = fill(tar::Builder::new(gz), images, config, spec, stats_dump)?;
            Ok(gz.finish()?)
        }
    }
}

fn fill<W: Write>(
    mut tar: tar::Builder<W>,
    images: &Path,
    config: &[u8],
    spec: &[u8],
    stats_dump: Option<&[u8]>,
) -> Result<W> {
    // Symbolic links stay links (CRIU writes none into an image directory
    // today, but a link must never pull in what it points at).
    tar.follow_symlinks(false);
    let files = [
        ("config.dump", Some(config)),
        ("spec.dump", Some(spec)),
        ("stats-dump", stats_dump),
    ];
    for (name, bytes) in files {
        if let Some(bytes) = bytes {
            add_bytes(&mut tar, name, bytes)?;
        }
    }
    tar.append_dir_all("checkpoint", images)
        .with_context(|| format!("archiving {}", images.display()))?;
    Ok(tar.into_inner()?)
}

/// Seconds since the epoch, for the files ckpt writes itself.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn add_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o600);
    header.set_mtime(now());
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, bytes)
        .with_context(|| format!("archiving {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> ContainerFacts {
        let at = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        ContainerFacts {
            engine: "docker".into(),
            id: "0123456789abcdef0123".into(),
            name: "ckpt-x-export".into(),
            image: Some("ckpt-x-workload:f0".into()),
            runtime: "runc".into(),
            created: at,
            checkpointed: at,
        }
    }

    #[test]
    fn config_dump_has_the_fields_checkpointctl_reads() {
        let json: serde_json::Value =
            serde_json::from_slice(&config_dump(&facts()).unwrap()).unwrap();
        assert_eq!(json["id"], "0123456789abcdef0123");
        assert_eq!(json["name"], "ckpt-x-export");
        assert_eq!(json["rootfsImageName"], "ckpt-x-workload:f0");
        assert_eq!(json["runtime"], "runc");
        assert_eq!(json["createdTime"], "2026-01-02T03:04:05+00:00");
        assert_eq!(json["restored"], false);
        let mut no_image = facts();
        no_image.image = None;
        let json: serde_json::Value =
            serde_json::from_slice(&config_dump(&no_image).unwrap()).unwrap();
        assert!(json.get("rootfsImageName").is_none(), "{json}");
    }

    #[test]
    fn spec_dump_keeps_the_spec_and_adds_the_names() {
        let spec = br#"{"ociVersion":"1.0.2","process":{"args":["x"]},"annotations":{"a":"b"}}"#;
        let json: serde_json::Value =
            serde_json::from_slice(&spec_dump(Some(spec), &facts()).unwrap()).unwrap();
        assert_eq!(json["process"]["args"][0], "x");
        assert_eq!(json["annotations"]["a"], "b");
        assert_eq!(json["annotations"][ENGINE_ANNOTATION], "docker");
        assert_eq!(json["annotations"][CRI_NAME_ANNOTATION], "ckpt-x-export");
        let bare: serde_json::Value =
            serde_json::from_slice(&spec_dump(None, &facts()).unwrap()).unwrap();
        assert_eq!(bare["ociVersion"], "1.0.2");
        assert_eq!(bare["annotations"][ENGINE_ANNOTATION], "docker");
        let null = br#"{"annotations":null}"#;
        assert!(spec_dump(Some(null), &facts()).is_ok());
        assert!(spec_dump(Some(b"[1]"), &facts()).is_err());
        assert!(spec_dump(Some(b"not json"), &facts()).is_err());
    }

    fn names(bytes: &[u8]) -> Vec<String> {
        let reader: Box<dyn std::io::Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::GzDecoder::new(bytes))
        } else {
            Box::new(bytes)
        };
        let mut archive = tar::Archive::new(reader);
        let mut names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_layout_is_podmans() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pstree.img"), b"p").unwrap();
        std::fs::write(dir.path().join("pages-1.img"), b"pages").unwrap();
        for compression in [Compression::None, Compression::Gzip] {
            let out = write(
                Vec::new(),
                compression,
                dir.path(),
                b"{}",
                b"{}",
                Some(b"s"),
            )
            .unwrap();
            assert_eq!(
                names(&out),
                [
                    "checkpoint/",
                    "checkpoint/pages-1.img",
                    "checkpoint/pstree.img",
                    "config.dump",
                    "spec.dump",
                    "stats-dump"
                ],
                "{compression:?}"
            );
        }
        let out = write(
            Vec::new(),
            Compression::None,
            dir.path(),
            b"{}",
            b"{}",
            None,
        )
        .unwrap();
        assert!(!names(&out).contains(&"stats-dump".to_string()));
    }

    #[test]
    fn a_directory_without_pstree_is_no_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(
            Vec::new(),
            Compression::None,
            dir.path(),
            b"{}",
            b"{}",
            None,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("not a CRIU checkpoint"),
            "{err:#}"
        );
    }
}
