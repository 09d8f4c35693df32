//! `ckpt diff` on a real CRIU checkpoint (the images of the decoder's fuzz
//! corpus) and on copies of it changed by hand. Needs no engine, so it runs
//! in a plain `cargo test`.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_fails, copy_dir as copy_of, run, text};
use criu_image::framing::{self, magic, IMG_COMMON_MAGIC};
use criu_image::messages::{
    FileEntry, InetSkEntry, InventoryEntry, MmEntry, PstreeEntry, VmaEntry,
};
use prost::Message;
use serde_json::Value;

/// The forker's pid in that checkpoint, and the id of its files table.
const ROOT: u32 = 31393;
const FILES_ID: u32 = 2;

/// The fuzz corpus's real images as a checkpoint directory. A corpus file
/// starts with a byte that picks the image for the fuzzer, and the
/// per-process files were renamed to the fuzzer's fixed pid 1 and files id
/// 0: both are undone here.
fn real_checkpoint() -> tempfile::TempDir {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../criu-image/fuzz/corpus/decode");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap();
        let Some(image) = name.strip_prefix("real-") else {
            continue;
        };
        let image = image
            .replace("-1.img", &format!("-{ROOT}.img"))
            .replace("fdinfo-0.img", &format!("fdinfo-{FILES_ID}.img"));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(dir.path().join(image), &bytes[1..]).unwrap();
    }
    dir
}

/// An image file: the common magic, the image's magic, then each message
/// with its size.
fn frame(image_magic: u32, messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in [IMG_COMMON_MAGIC, image_magic] {
        out.extend_from_slice(&m.to_le_bytes());
    }
    for msg in messages {
        out.extend_from_slice(&(msg.len() as u32).to_le_bytes());
        out.extend_from_slice(msg);
    }
    out
}

/// The raw messages of an image file.
fn messages(path: &Path, image_magic: u32) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    framing::entries(&bytes, image_magic, "test")
        .unwrap()
        .iter()
        .map(|e| e.bytes.to_vec())
        .collect()
}

/// Rewrites an image without its last entry.
fn drop_last_entry(path: &Path, image_magic: u32) {
    let mut all = messages(path, image_magic);
    all.pop();
    std::fs::write(path, frame(image_magic, &all)).unwrap();
}

/// B: the last child exits and another starts; the forker's first memory
/// area grows a page, its last one goes, a new one appears, its last run of
/// pages and its last open file (fd 251, a pipe) are gone; 8 KiB of pages
/// are added; CRIU's restore statistics are missing.
fn changed_copy(a: &Path) -> tempfile::TempDir {
    let b = copy_of(a);
    let dir = b.path();
    let pstree = dir.join("pstree.img");
    drop_last_entry(&pstree, magic::PSTREE);
    let mut tree = messages(&pstree, magic::PSTREE);
    let newcomer = PstreeEntry {
        pid: 31500,
        ppid: ROOT,
        pgid: ROOT,
        sid: ROOT,
        threads: vec![31500],
    };
    tree.push(newcomer.encode_to_vec());
    std::fs::write(&pstree, frame(magic::PSTREE, &tree)).unwrap();

    let mm_path = dir.join(format!("mm-{ROOT}.img"));
    let bytes = std::fs::read(&mm_path).unwrap();
    let mut mm: MmEntry = framing::decode_one(&bytes, magic::MM, "mm").unwrap();
    mm.vmas[0].end += 0x1000;
    mm.vmas.pop();
    mm.vmas.push(VmaEntry {
        start: 0x7f00_0000_0000,
        end: 0x7f00_0000_4000,
        prot: 3,
        flags: 0x22,
        ..Default::default()
    });
    std::fs::write(&mm_path, frame(magic::MM, &[mm.encode_to_vec()])).unwrap();

    drop_last_entry(&dir.join(format!("pagemap-{ROOT}.img")), magic::PAGEMAP);
    drop_last_entry(&dir.join(format!("fdinfo-{FILES_ID}.img")), magic::FDINFO);
    std::fs::write(dir.join("pages-1.img"), vec![0u8; 8192]).unwrap();
    std::fs::remove_file(dir.join("stats-restore")).unwrap();
    b
}

fn diff(a: &Path, b: &Path, json: bool) -> String {
    let mut args = vec!["diff", a.to_str().unwrap(), b.to_str().unwrap()];
    if json {
        args.push("--json");
    }
    let out = run(&args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout
}

fn diff_json(a: &Path, b: &Path) -> Value {
    serde_json::from_str(&diff(a, b, true)).unwrap()
}

#[test]
fn a_checkpoint_diffed_with_itself_has_no_change() {
    let a = real_checkpoint();
    let b = copy_of(a.path());
    let json = diff_json(a.path(), b.path());
    assert_eq!(json["unchanged"], true, "{json}");
    assert_eq!(json["processes"]["a"], 11);
    assert_eq!(json["processes_unchanged"], 11);
    assert_eq!(json["statistics"].as_array().unwrap().len(), 9, "{json}");
    let tree = diff(a.path(), b.path(), false);
    assert!(tree.contains("├─ processes: 11 (no change)"), "{tree}");
    assert!(
        tree.contains("CRIU dump frozen: 38.44 ms (no change)"),
        "{tree}"
    );
    assert!(
        tree.ends_with(
            "no difference: the same processes, memory, open files, sockets, sizes and statistics\n"
        ),
        "{tree}"
    );
}

#[test]
fn the_diff_names_every_change() {
    let a = real_checkpoint();
    let b = changed_copy(a.path());
    let json = diff_json(a.path(), b.path());
    assert_eq!(json["unchanged"], false);
    assert_eq!(json["pages_bytes"]["delta"], 8192);
    assert_eq!(json["processes_gone"][0]["pid"], 31403);
    assert_eq!(json["processes_added"][0]["pid"], 31500);
    let changed = json["processes_changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{json}");
    let root = &changed[0];
    assert_eq!(
        (root["pid"].as_u64(), root["command"].as_str()),
        (Some(ROOT.into()), Some("ckpt-workload"))
    );
    assert_eq!(root["areas_changed"][0]["size"]["delta"], 4096, "{root}");
    assert_eq!(
        root["areas_removed"][0]["start"], 0xffff_ffff_ff60_0000u64,
        "{root}"
    );
    assert_eq!(
        root["areas_added"][0]["start"], 0x7f00_0000_0000u64,
        "{root}"
    );
    assert!(
        root["pages_dumped"]["delta"].as_i64().unwrap() < 0,
        "{root}"
    );
    assert_eq!(root["files_gone"][0]["fd"], 251, "{root}");
    assert!(root["files_added"].as_array().unwrap().is_empty());
    let restore = json["statistics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "restore")
        .unwrap();
    assert!(
        restore["b"].is_null() && restore["delta"].is_null(),
        "{restore}"
    );

    let tree = diff(a.path(), b.path(), false);
    for line in [
        "├─ memory pages size: 0 B → 8.0 KiB (+8.0 KiB)",
        "├─ process gone: [31403]",
        "├─ process added: [31500]",
        "├─ CRIU restore: 15.31 ms → none",
        "└─ processes changed: 1 of the 10 in both",
        "   └─ [31393] ckpt-workload",
        "memory area changed: 55557dc53000 rw-p: size 136.0 KiB → 140.0 KiB (+4.0 KiB)",
        "memory area removed: ffffffffff600000-ffffffffff601000 --xp 4.0 KiB, 0 page(s) dumped",
        "memory area added: 7f0000000000-7f0000004000 rw-p 16.0 KiB, 0 page(s) dumped",
        "└─ open file gone: fd 251 pipe",
        "the checkpoints differ",
    ] {
        assert!(tree.contains(line), "{line}\n{tree}");
    }
}

/// A Podman export archive holds the images under checkpoint/: the same
/// checkpoint as an archive has no change from its directory.
#[test]
fn an_archive_diffs_against_a_directory() {
    let a = real_checkpoint();
    let archive = tempfile::tempdir().unwrap();
    let path: PathBuf = archive.path().join("export.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&path).unwrap());
    tar.append_dir_all("checkpoint", a.path()).unwrap();
    tar.finish().unwrap();
    drop(tar);
    let json = diff_json(a.path(), &path);
    assert_eq!(json["unchanged"], true, "{json}");
}

fn assert_diff_fails(a: &Path, b: &Path, expected: &str) {
    assert_fails(
        &["diff", a.to_str().unwrap(), b.to_str().unwrap()],
        expected,
    );
}

#[test]
fn what_is_not_a_checkpoint_is_refused() {
    let a = real_checkpoint();
    let empty = tempfile::tempdir().unwrap();
    assert_diff_fails(a.path(), empty.path(), "is not a CRIU checkpoint");
    assert_diff_fails(
        &empty.path().join("missing"),
        a.path(),
        "neither a checkpoint directory nor a checkpoint archive",
    );
    let text_file = empty.path().join("notes.txt");
    std::fs::write(&text_file, "not a tar").unwrap();
    assert_diff_fails(a.path(), &text_file, "checkpoint B");
}

#[test]
fn checkpoints_of_different_formats_are_refused() {
    let a = real_checkpoint();
    let newer = copy_of(a.path());
    let inventory = newer.path().join("inventory.img");
    let bytes = std::fs::read(&inventory).unwrap();
    let mut entry: InventoryEntry =
        framing::decode_one(&bytes, magic::INVENTORY, "inventory").unwrap();
    entry.img_version += 1;
    std::fs::write(
        &inventory,
        frame(magic::INVENTORY, &[entry.encode_to_vec()]),
    )
    .unwrap();
    assert_diff_fails(a.path(), newer.path(), "different formats");

    let broken = copy_of(a.path());
    std::fs::write(broken.path().join(format!("mm-{ROOT}.img")), b"garbage!").unwrap();
    assert_diff_fails(a.path(), broken.path(), &format!("mm-{ROOT}.img"));
    assert_diff_fails(broken.path(), a.path(), "not of one format");
}

/// An IPv4 socket on 127.0.0.1 as files.img holds it (type INETSK).
fn inet_socket(id: u32, sock_type: u32, state: u32, ports: (u32, u32)) -> Vec<u8> {
    let loopback = u32::from_le_bytes([127, 0, 0, 1]);
    let socket = InetSkEntry {
        id,
        ino: 1000 + id,
        family: 2,
        sock_type,
        state,
        src_port: ports.0,
        dst_port: ports.1,
        src_addr: vec![loopback],
        dst_addr: vec![if ports.1 == 0 { 0 } else { loopback }],
        ..Default::default()
    };
    FileEntry {
        kind: 4,
        id,
        isk: Some(socket),
        ..Default::default()
    }
    .encode_to_vec()
}

/// A copy of `base` whose files.img also holds `sockets`.
fn with_sockets(base: &Path, sockets: &[Vec<u8>]) -> tempfile::TempDir {
    let copy = copy_of(base);
    let path = copy.path().join("files.img");
    let mut all = messages(&path, magic::FILES);
    all.extend_from_slice(sockets);
    std::fs::write(&path, frame(magic::FILES, &all)).unwrap();
    copy
}

/// A: a listener and a connection. B: the connection half closed, the
/// listener gone, a UDP socket new.
#[test]
fn socket_changes_are_listed() {
    let base = real_checkpoint();
    let a = with_sockets(
        base.path(),
        &[
            inet_socket(900, 1, 10, (8080, 0)),
            inet_socket(901, 1, 1, (8080, 40000)),
        ],
    );
    let b = with_sockets(
        base.path(),
        &[
            inet_socket(902, 1, 8, (8080, 40000)),
            inet_socket(903, 2, 7, (5353, 0)),
        ],
    );
    let json = diff_json(a.path(), b.path());
    assert_eq!(json["unchanged"], false);
    let sockets = &json["sockets"];
    assert_eq!(sockets["removed"][0]["state"], "LISTEN", "{sockets}");
    assert_eq!(sockets["added"][0]["family"], "udp", "{sockets}");
    assert_eq!(
        sockets["changed"][0]["b"]["state"], "CLOSE_WAIT",
        "{sockets}"
    );
    let tree = diff(a.path(), b.path(), false);
    for line in [
        "├─ sockets: 2 (no change)",
        "├─ socket removed: tcp LISTEN 127.0.0.1:8080",
        "├─ socket added: udp CLOSE 127.0.0.1:5353",
        "├─ socket changed: tcp 127.0.0.1:8080 peer 127.0.0.1:40000: ESTABLISHED → CLOSE_WAIT",
    ] {
        assert!(tree.contains(line), "{line}\n{tree}");
    }
    let same = diff_json(a.path(), copy_of(a.path()).path());
    assert_eq!(same["unchanged"], true, "{same}");
    assert_eq!(same["sockets"]["unchanged"], 2, "{same}");
}
