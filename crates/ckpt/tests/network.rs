//! Docker's two network choices on the real daemon: each container gets a
//! network namespace of its own with loopback only, `disabled` carries no
//! network hook (Docker records no network for it) and `none` does, a
//! container checkpointed under either carries on after the restore, and
//! neither leaves a sandbox file behind.

mod common;

use std::process::Command;
use std::time::Duration;

use ckpt::engine::moby::DockerEngine;
use ckpt::engine::Engine;
use ckpt::model::{ImageSpec, Network, RunSpec};
use ckpt::run::RunId;

fn docker_inspect(id: &str, format: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "--format", format, id])
        .output()
        .expect("docker CLI runs");
    assert!(out.status.success(), "docker inspect {id}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The network namespace of `/proc/<process>`.
fn netns(process: &str) -> String {
    std::fs::read_link(format!("/proc/{process}/ns/net"))
        .unwrap()
        .display()
        .to_string()
}

/// The namespace files of Docker's network sandboxes.
fn sandbox_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/var/run/docker/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn both_network_choices_isolate_the_container_and_restore() {
    let before = common::ckpt_objects();
    let sandboxes = sandbox_files();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let run = RunId::new();
    let result = runtime.block_on(async {
        let (docker, _) = DockerEngine::connect_checked().await.unwrap();
        let checked = check_both(&docker, &run).await;
        docker.remove_run(&run).await.unwrap();
        checked
    });
    result.unwrap();
    assert_eq!(common::ckpt_objects(), before, "objects left behind");
    // dockerd leaves a file per sandbox of a `--network none` container
    // (start and restore); ckpt removes its containers' files.
    assert_eq!(
        sandbox_files(),
        sandboxes,
        "Docker's sandbox files left behind"
    );
}

async fn check_both(docker: &DockerEngine, run: &RunId) -> anyhow::Result<()> {
    let image = docker.build_image(run, &ImageSpec::default()).await?;
    // "self", not our pid: under CI's pid namespace the two can differ.
    let host_netns = netns("self");
    for (network, disabled, networks) in [
        (Network::Disabled, "true", "map[]"),
        (Network::None, "false", "none"),
    ] {
        let spec = RunSpec {
            name: run.name(&format!("net-{network:?}").to_lowercase()),
            args: vec!["forker".into(), "--children".into(), "1".into()],
            entrypoint: None,
            network,
            netns: None,
        };
        let c = docker.run(run, &image, &spec).await?;
        docker
            .wait_for_line(&c, 0, &ckpt::workload::is_ready, Duration::from_secs(30))
            .await?;
        assert_eq!(
            docker_inspect(&c.id, "{{.Config.NetworkDisabled}}"),
            disabled
        );
        let attached = docker_inspect(
            &c.id,
            "{{if .NetworkSettings.Networks}}{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}{{else}}map[]{{end}}",
        );
        assert_eq!(attached, networks, "{network:?}");
        let pid = docker.root_pid(&c).await?;
        assert_ne!(
            netns(&pid.to_string()),
            host_netns,
            "{network:?}: the host's namespace"
        );
        let before = docker.processes(&c).await?;
        docker.checkpoint(&c, "cp").await?;
        docker.restore(&c, "cp").await?;
        assert_eq!(docker.processes(&c).await?, before, "{network:?}");
        docker.remove_container(&c).await?;
    }
    Ok(())
}
