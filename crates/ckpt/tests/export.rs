//! `ckpt export` against the real engines: its archives are read by
//! checkpointctl and by `ckpt inspect`, Podman imports Podman's, and a
//! checkpoint OCI image made from one is loaded and restored by Podman.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{assert_fails, ckpt, ckpt_objects, text, TestImage, REDIS_PROGRAM};

fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn podman_objects() -> (String, String) {
    (
        sh("podman", &["ps", "-aq"]),
        sh("podman", &["images", "-q", "--filter", "label=io.ckpt.run"]),
    )
}

/// Runs `ckpt export ARGS`; returns its stdout.
fn export(args: &[&str]) -> String {
    let out = ckpt().arg("export").args(args).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout
}

fn checkpointctl(args: &[&str]) -> String {
    let out = Command::new("checkpointctl").args(args).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success() && !stderr.to_lowercase().contains("error"),
        "checkpointctl {args:?}: {stdout}\n{stderr}"
    );
    stdout
}

fn inspect_json(path: &Path) -> serde_json::Value {
    let out = ckpt()
        .args(["inspect", "--json"])
        .arg(path)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// Exports a fresh workload of `engine` with two children (8 MiB each, as
/// the forker) and checks what
/// checkpointctl and `ckpt inspect` find in the archive.
fn archive_is_read_by_every_tool(engine: &str, file: &str, extra: &[&str]) {
    let before = (ckpt_objects(), podman_objects());
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(file);
    let mut args = vec![
        "--engine",
        engine,
        "--children",
        "2",
        "--memory-mib",
        "8",
        "-o",
        path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    export(&args);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "a checkpoint holds the whole memory");
    let shown = checkpointctl(&["show", path.to_str().unwrap()]);
    assert!(
        shown.contains("-export"),
        "checkpointctl names the container: {shown}"
    );
    assert!(shown.contains("runc"), "{shown}");
    let tree = checkpointctl(&["inspect", "--ps-tree", path.to_str().unwrap()]);
    assert_eq!(tree.matches("ckpt-workload").count(), 3, "{tree}");
    // Everything checkpointctl can show: files, sockets, mounts (spec.dump).
    let all = checkpointctl(&["inspect", "--all", path.to_str().unwrap()]);
    assert!(all.contains("/proc"), "the spec's mounts: {all}");
    let json = inspect_json(&path);
    assert_eq!(json["container"]["engine"], engine, "{json}");
    assert!(json["container"]["name"]
        .as_str()
        .unwrap()
        .ends_with("-export"));
    assert_eq!(json["checkpoint"]["processes"].as_array().unwrap().len(), 3);
    assert!(
        json["checkpoint"]["pages_bytes"].as_u64().unwrap() > 3 * (8 << 20),
        "every process's memory is in the archive: {json}"
    );
    assert!(
        json["checkpoint"]["dump_stats"]["pages_written"]
            .as_u64()
            .unwrap()
            > 0,
        "stats-dump travels in the archive: {json}"
    );
    assert_eq!(
        before,
        (ckpt_objects(), podman_objects()),
        "nothing left behind"
    );
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn runc_archive_is_read_by_checkpointctl_and_inspect() {
    archive_is_read_by_every_tool("runc", "runc.tar", &[]);
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn docker_archive_is_read_by_checkpointctl_and_inspect() {
    // gzip here: checkpointctl and ckpt inspect read it as well.
    archive_is_read_by_every_tool("docker", "docker.tar.gz", &["--compress", "gzip"]);
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn podman_archive_is_read_by_checkpointctl_and_inspect() {
    archive_is_read_by_every_tool("podman", "podman.tar", &[]);
}

/// A program of the user's on runc (redis-server from an image in
/// Docker's storage, unpacked by ckpt): its archive is shown by
/// checkpointctl and `ckpt inspect`, with the image's name, redis-server's
/// process and its listening socket; nothing is left behind.
#[test]
#[ignore = "needs root, dockerd, Podman and CRIU: ./scripts/test"]
fn runc_archive_of_a_real_program_is_read_by_checkpointctl_and_inspect() {
    let before = (ckpt_objects(), podman_objects());
    let image = TestImage::build("redis");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("redis.tar");
    let mut args = vec!["--engine", "runc", "--image", &image.tag];
    args.extend_from_slice(&REDIS_PROGRAM[..6]);
    args.extend(["-o", path.to_str().unwrap()]);
    export(&args);
    let file = path.to_str().unwrap();
    let shown = checkpointctl(&["show", file]);
    assert!(shown.contains(&image.tag), "{shown}");
    checkpointctl(&["inspect", "--ps-tree", file]);
    let info = inspect_json(&path);
    let text = info.to_string();
    assert!(text.contains("redis-server"), "{info}");
    assert!(text.contains(&image.tag), "{info}");
    assert!(text.contains("6379"), "the listening socket: {info}");
    assert!(image.exists_in("docker"), "the user's image stays");
    drop(image);
    assert_eq!((ckpt_objects(), podman_objects()), before);
}

fn workload_binary() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_ckpt"));
    let target = exe.parent().unwrap().parent().unwrap();
    target.join("x86_64-unknown-linux-gnu/release/ckpt-workload")
}

/// The workload's image in Podman's store, built from ckpt's own context:
/// a restore needs the image the container was made from.
fn build_podman_image(tag: &str) {
    let ctx = tempfile::tempdir().unwrap();
    let tar_bytes = ckpt::workload::build_context(&workload_binary()).unwrap();
    tar::Archive::new(tar_bytes.as_slice())
        .unpack(ctx.path())
        .unwrap();
    sh(
        "podman",
        &["build", "-q", "-t", tag, ctx.path().to_str().unwrap()],
    );
}

/// Restores with `podman container restore ARGS` and checks that the
/// workload runs on: running, and still ticking a second later.
fn restore_and_check(args: &[&str], name: &str) {
    let mut all = vec!["container", "restore", "--runtime", "runc"];
    all.extend_from_slice(args);
    sh("podman", &all);
    let running = sh("podman", &["inspect", "-f", "{{.State.Running}}", name]);
    assert_eq!(running, "true", "the restored container runs");
    let lines = |n: &str| sh("podman", &["logs", n]).lines().count();
    let before = lines(name);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(lines(name) > before, "the restored workload keeps ticking");
    sh("podman", &["rm", "-f", name]);
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn podman_restores_ckpts_archive_and_checkpoint_image() {
    let before = (ckpt_objects(), podman_objects());
    let id = std::process::id();
    let tag = format!("localhost/ckpt-test-export:{id}");
    let image = format!("localhost/ckpt-test-export-checkpoint:{id}");
    build_podman_image(&tag);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("podman.tar");
    let oci = tmp.path().join("checkpoint-image.tar");
    let result = std::panic::catch_unwind(|| {
        export(&[
            "--engine",
            "podman",
            "--image",
            &tag,
            "-o",
            archive.to_str().unwrap(),
        ]);
        let name = inspect_json(&archive)["container"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        restore_and_check(&["--import", archive.to_str().unwrap()], &name);
        // The layer plain and gzip-compressed: Podman takes both.
        for compress in ["none", "gzip"] {
            export(&[
                "--from",
                archive.to_str().unwrap(),
                "--oci-image",
                &image,
                "--compress",
                compress,
                "--force",
                "-o",
                oci.to_str().unwrap(),
            ]);
            sh("podman", &["load", "-i", oci.to_str().unwrap()]);
            let annotations = sh(
                "podman",
                &["image", "inspect", "-f", "{{json .Annotations}}", &image],
            );
            assert!(
                annotations.contains("io.kubernetes.cri-o.annotations.checkpoint.name")
                    && annotations.contains(&name),
                "{annotations}"
            );
            restore_and_check(&[&image], &name);
            sh("podman", &["rmi", &image]);
        }
    });
    let _ = Command::new("podman")
        .args(["rm", "-f", "-a", "--filter", &format!("ancestor={tag}")])
        .output();
    let _ = Command::new("podman")
        .args(["rmi", "-f", &image, &tag])
        .output();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert_eq!(
        before,
        (ckpt_objects(), podman_objects()),
        "nothing left behind"
    );
}

#[test]
fn bad_input_gets_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("a.tar");
    let o = out.to_str().unwrap();
    assert_fails(
        &["export", "--engine", "lxc", "-o", o],
        "invalid value 'lxc'",
    );
    assert_fails(
        &["export", "--engine", "criu", "-o", o],
        "no container spec",
    );
    assert_fails(
        &[
            "export",
            "--engine",
            "runc",
            "-o",
            "/proc/ckpt-nowhere/a.tar",
        ],
        "cannot write into /proc/ckpt-nowhere",
    );
    std::fs::write(&out, b"mine").unwrap();
    assert_fails(&["export", "--engine", "runc", "-o", o], "--force");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"mine",
        "an existing file is kept"
    );
    assert_fails(
        &[
            "export",
            "--from",
            "/nonexistent.tar",
            "--oci-image",
            "x",
            "-o",
            "/tmp/x",
        ],
        "is not a file",
    );
    assert_fails(&["export", "--from", o, "-o", "/tmp/x"], "--oci-image");
    // A corrupt archive, to export and to inspect.
    let bad = tmp.path().join("bad.tar.gz");
    std::fs::write(&bad, [0x1f, 0x8b, 8, 0, 1, 2, 3, 4]).unwrap();
    let image = tmp.path().join("img.tar");
    assert_fails(
        &[
            "export",
            "--from",
            bad.to_str().unwrap(),
            "--oci-image",
            "x",
            "-o",
            image.to_str().unwrap(),
        ],
        "not a readable checkpoint archive",
    );
    assert!(!image.exists(), "a failed export leaves no file");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        2,
        "nor a partial one"
    );
    assert_fails(
        &["inspect", bad.to_str().unwrap()],
        "not a readable checkpoint archive",
    );
    let plain = tmp.path().join("plain.tar");
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(2);
    tar.append_data(&mut header, "config.dump", &b"{}"[..])
        .unwrap();
    std::fs::write(&plain, tar.into_inner().unwrap()).unwrap();
    assert_fails(
        &["inspect", plain.to_str().unwrap()],
        "holds no checkpoint/pstree.img",
    );
}
