//! A checkpoint OCI image: one layer holding the archive's files at its
//! root (what `podman container checkpoint --create-image` commits, and
//! what CRI-O mounts to restore from), with the annotations CRI-O, Podman
//! and checkpointctl look for on its manifest. Written as an `oci-archive`
//! (a tar of an OCI image layout), which `podman load -i` takes and which
//! keeps the manifest's annotations (a `docker save` archive has nowhere to
//! put them, and Podman 4.3 refuses a checkpoint image without them).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result};
use oci_spec::image::{
    Arch, Descriptor, Digest, ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder,
    MediaType, Os, RootFsBuilder,
};

use super::pending::Pending;
use crate::inspect::ContainerInfo;

/// CRI-O (1.26+) restores from an image that carries this annotation.
pub const CRIO_NAME: &str = "io.kubernetes.cri-o.annotations.checkpoint.name";
/// Podman's own checkpoint images.
pub const PODMAN_PREFIX: &str = "io.podman.annotations.checkpoint.";
/// checkpointctl's `build` and the checkpoint-restore project's common ones.
pub const CRIU_PREFIX: &str = "org.criu.checkpoint.";
/// The name `podman load` gives the image.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What the annotations say beyond the archive's own facts: the host
/// the checkpoint was taken on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostFacts {
    pub criu_version: Option<String>,
    pub kernel: Option<String>,
    /// OCI's name of the CPU architecture ("amd64").
    pub arch: String,
}

impl HostFacts {
    /// This host's.
    pub fn here() -> HostFacts {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|k| k.trim().to_string());
        HostFacts {
            criu_version: criu_version(),
            kernel,
            arch: oci_arch(std::env::consts::ARCH).to_string(),
        }
    }
}

/// CRIU's version as Podman writes it (major*10000 + minor*100 + sub).
fn criu_version() -> Option<String> {
    let out = std::process::Command::new("criu")
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("Version:"))?
        .trim();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b, c) = (
        parts.next()?,
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    Some((a * 10000 + b * 100 + c).to_string())
}

/// Rust's architecture names in OCI's words.
fn oci_arch(rust: &str) -> &str {
    match rust {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The manifest's annotations: each tool's own names for the same facts.
pub fn annotations(container: &ContainerInfo, host: &HostFacts) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut put = |key: String, value: Option<&str>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            out.insert(key, v.to_string());
        }
    };
    let name = container.name.as_deref();
    put(CRIO_NAME.into(), name);
    for prefix in [PODMAN_PREFIX, CRIU_PREFIX] {
        let key = |suffix: &str| format!("{prefix}{suffix}");
        put(key("runtime.name"), container.runtime.as_deref());
        put(key("rootfsImageName"), container.image.as_deref());
        put(key("criu.version"), host.criu_version.as_deref());
        put(key("host.arch"), Some(&host.arch));
        put(key("host.kernel"), host.kernel.as_deref());
    }
    put(format!("{PODMAN_PREFIX}name"), name);
    put(format!("{CRIU_PREFIX}container.name"), name);
    put(format!("{CRIU_PREFIX}engine.name"), Some(&container.engine));
    out
}

/// A writer that hashes (SHA-256) and counts what passes through it.
struct Hashing<W> {
    inner: W,
    digest: ring::digest::Context,
    size: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            digest: ring::digest::Context::new(&ring::digest::SHA256),
            size: 0,
        }
    }

    /// The inner writer, the hex digest and the size.
    fn finish(self) -> (W, String, u64) {
        (self.inner, hex(self.digest.finish().as_ref()), self.size)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// A blob's descriptor.
fn descriptor(media: MediaType, hex_digest: &str, size: u64) -> Result<Descriptor> {
    let digest = Digest::from_str(&format!("sha256:{hex_digest}"))
        .context("a SHA-256 digest that OCI refuses")?;
    Ok(Descriptor::new(media, size, digest))
}

/// Writes the image named `name` into `out` (an `oci-archive`): the layer
/// is the archive's tar (`archive`, already decompressed), gzip-compressed
/// when `gzip`. `scratch` is where the layer waits while its digest is
/// computed.
pub fn write<W: Write>(
    out: W,
    name: &str,
    archive: impl Read,
    annotations: BTreeMap<String, String>,
    arch: &str,
    gzip: bool,
    scratch: &Path,
) -> Result<W> {
    let mut layer_file = Pending::create(scratch, true)?;
    let layer = write_layer(archive, layer_file.file(), gzip)?;
    let (config, manifest, index) = metadata(name, &layer, annotations, arch)?;
    let mut tar = tar::Builder::new(out);
    add(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add(&mut tar, "index.json", &index)?;
    for blob in [&config, &manifest] {
        add(&mut tar, &format!("blobs/sha256/{}", sha256(blob)), blob)?;
    }
    let file = layer_file.file();
    file.rewind()?;
    let mut header = header(layer.size);
    tar.append_data(&mut header, format!("blobs/sha256/{}", layer.digest), file)
        .context("writing the layer")?;
    Ok(tar.into_inner()?)
}

/// The image's one layer, as written: its uncompressed digest (the
/// configuration's diff id), its digest and size as stored, its media type.
struct Layer {
    diff_id: String,
    digest: String,
    size: u64,
    media: MediaType,
}

/// Copies the archive's tar into `file` as the layer, gzip-compressed when
/// `gzip`, hashing it on the way.
fn write_layer(mut archive: impl Read, file: &mut std::fs::File, gzip: bool) -> Result<Layer> {
    if gzip {
        let gz = flate2::write::GzEncoder::new(Hashing::new(file), flate2::Compression::fast());
        let mut plain = Hashing::new(gz);
        std::io::copy(&mut archive, &mut plain).context("reading the archive")?;
        let (gz, diff_id, _) = plain.finish();
        let (_, digest, size) = gz.finish()?.finish();
        return Ok(Layer {
            diff_id,
            digest,
            size,
            media: MediaType::ImageLayerGzip,
        });
    }
    // An uncompressed layer's digest is its diff id.
    let mut plain = Hashing::new(file);
    std::io::copy(&mut archive, &mut plain).context("reading the archive")?;
    let (_, digest, size) = plain.finish();
    Ok(Layer {
        diff_id: digest.clone(),
        digest,
        size,
        media: MediaType::ImageLayer,
    })
}

/// The image's configuration, manifest (carrying the annotations) and
/// index (naming the image `name`), serialized.
fn metadata(
    name: &str,
    layer: &Layer,
    annotations: BTreeMap<String, String>,
    arch: &str,
) -> Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let config = ImageConfigurationBuilder::default()
        .architecture(Arch::from(arch))
        .os(Os::Linux)
        .created(chrono::Utc::now().to_rfc3339())
        .rootfs(
            RootFsBuilder::default()
                .diff_ids(vec![format!("sha256:{}", layer.diff_id)])
                .build()?,
        )
        .build()?;
    let config = serde_json::to_vec(&config)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(
            MediaType::ImageConfig,
            &sha256(&config),
            config.len() as u64,
        )?)
        .layers(vec![descriptor(
            layer.media.clone(),
            &layer.digest,
            layer.size,
        )?])
        .annotations(annotations.into_iter().collect::<HashMap<_, _>>())
        .build()?;
    let manifest = serde_json::to_vec(&manifest)?;
    let mut entry = descriptor(
        MediaType::ImageManifest,
        &sha256(&manifest),
        manifest.len() as u64,
    )?;
    entry.set_annotations(Some(HashMap::from([(
        REF_NAME.to_string(),
        name.to_string(),
    )])));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![entry])
        .build()?;
    Ok((config, manifest, serde_json::to_vec(&index)?))
}

fn header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn add<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    tar.append_data(&mut header(bytes.len() as u64), name, bytes)
        .with_context(|| format!("writing {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> ContainerInfo {
        ContainerInfo {
            engine: "podman".into(),
            name: Some("web".into()),
            image: Some("localhost/app:1".into()),
            runtime: Some("runc".into()),
            ..Default::default()
        }
    }

    fn host() -> HostFacts {
        HostFacts {
            criu_version: Some("40101".into()),
            kernel: Some("6.18.0".into()),
            arch: "amd64".into(),
        }
    }

    #[test]
    fn every_tool_finds_its_annotations() {
        let a = annotations(&container(), &host());
        assert_eq!(a[CRIO_NAME], "web");
        assert_eq!(a["io.podman.annotations.checkpoint.name"], "web");
        // Podman 4.3 refuses a checkpoint image without its runtime's name.
        assert_eq!(a["io.podman.annotations.checkpoint.runtime.name"], "runc");
        assert_eq!(a["org.criu.checkpoint.container.name"], "web");
        assert_eq!(a["org.criu.checkpoint.engine.name"], "podman");
        assert_eq!(a["org.criu.checkpoint.runtime.name"], "runc");
        assert_eq!(a["org.criu.checkpoint.rootfsImageName"], "localhost/app:1");
        assert_eq!(a["org.criu.checkpoint.criu.version"], "40101");
        assert_eq!(a["org.criu.checkpoint.host.arch"], "amd64");
        // Unknown facts are left out, not written empty.
        let bare = annotations(
            &ContainerInfo {
                engine: "runc".into(),
                ..Default::default()
            },
            &HostFacts::default(),
        );
        assert!(!bare.contains_key(CRIO_NAME), "{bare:?}");
        assert!(bare.values().all(|v| !v.is_empty()), "{bare:?}");
    }

    #[test]
    fn architectures_use_ocis_names() {
        assert_eq!(oci_arch("x86_64"), "amd64");
        assert_eq!(oci_arch("aarch64"), "arm64");
        assert_eq!(oci_arch("riscv64"), "riscv64");
    }

    fn entries(tar_bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let mut bytes = Vec::new();
                e.read_to_end(&mut bytes).unwrap();
                (name, bytes)
            })
            .collect()
    }

    #[test]
    fn the_layout_is_consistent() {
        the_layout_is_consistent_with(true);
        the_layout_is_consistent_with(false);
    }

    fn the_layout_is_consistent_with(gzip: bool) {
        let dir = tempfile::tempdir().unwrap();
        let mut layer = tar::Builder::new(Vec::new());
        let mut h = header(2);
        layer
            .append_data(&mut h, "config.dump", &b"{}"[..])
            .unwrap();
        let layer = layer.into_inner().unwrap();
        let out = write(
            Vec::new(),
            "localhost/cp:1",
            layer.as_slice(),
            annotations(&container(), &host()),
            "amd64",
            gzip,
            &dir.path().join("scratch"),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "scratch removed"
        );
        let files = entries(&out);
        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let m = &index["manifests"][0];
        assert_eq!(m["annotations"][REF_NAME], "localhost/cp:1");
        let digest = m["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        let manifest_bytes = &files[&format!("blobs/sha256/{digest}")];
        assert_eq!(sha256(manifest_bytes), digest);
        let manifest: serde_json::Value = serde_json::from_slice(manifest_bytes).unwrap();
        assert_eq!(manifest["annotations"][CRIO_NAME], "web");
        let layer_desc = &manifest["layers"][0];
        let layer_digest = layer_desc["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        let blob = &files[&format!("blobs/sha256/{layer_digest}")];
        assert_eq!(sha256(blob), layer_digest);
        assert_eq!(layer_desc["size"].as_u64().unwrap(), blob.len() as u64);
        // The layer is the archive, gzipped; the config names its diff id.
        let plain = if gzip {
            assert_eq!(
                layer_desc["mediaType"],
                "application/vnd.oci.image.layer.v1.tar+gzip"
            );
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(blob.as_slice())
                .read_to_end(&mut plain)
                .unwrap();
            plain
        } else {
            assert_eq!(
                layer_desc["mediaType"],
                "application/vnd.oci.image.layer.v1.tar"
            );
            blob.clone()
        };
        assert_eq!(plain, layer);
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&files[&format!("blobs/sha256/{config_digest}")]).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            format!("sha256:{}", sha256(&layer))
        );
        assert_eq!(config["architecture"], "amd64");
    }
}
