//! The container recipe (`deploy/Containerfile`) checked without a container engine: a
//! multi-stage build of the `guestloop` package with the pinned toolchain, pinned base images,
//! and a runtime stage that runs `guestloop` as a non-root user.

use std::path::Path;

const CONTAINERFILE: &str = include_str!("../../deploy/Containerfile");
const DOCKERIGNORE: &str = include_str!("../../.dockerignore");
const TOOLCHAIN: &str = include_str!("../../rust-toolchain.toml");

/// One instruction: the keyword in upper case and its arguments, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    arguments: String,
}

fn instructions(recipe: &str) -> Vec<Instruction> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in recipe.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if trimmed.starts_with('#') {
            continue; // a comment inside a continued instruction
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .map(|line| {
            let (keyword, arguments) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            Instruction {
                keyword: keyword.to_ascii_uppercase(),
                arguments: arguments.trim().to_string(),
            }
        })
        .collect()
}

/// The instructions of each stage, split at `FROM`.
fn stages(recipe: &str) -> Vec<Vec<Instruction>> {
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for instruction in instructions(recipe) {
        if instruction.keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("the recipe starts with FROM")
            .push(instruction);
    }
    stages
}

fn arguments<'a>(stage: &'a [Instruction], keyword: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|i| i.keyword == keyword)
        .map(|i| i.arguments.as_str())
        .collect()
}

fn exec_form(arguments: &str) -> Vec<String> {
    serde_json::from_str(arguments)
        .unwrap_or_else(|_| panic!("`{arguments}` is not in exec (JSON array) form"))
}

fn pinned_toolchain() -> &'static str {
    TOOLCHAIN
        .lines()
        .find_map(|line| line.trim().strip_prefix("channel = "))
        .map(|value| value.trim_matches('"'))
        .expect("rust-toolchain.toml names a channel")
}

#[test]
fn the_image_is_built_in_a_separate_stage_with_the_pinned_toolchain() {
    let stages = stages(CONTAINERFILE);
    assert!(stages.len() >= 2, "multi-stage build expected");
    let builder = &stages[0];
    let from = builder[0].arguments.as_str();
    let (image, name) = from.split_once(" AS ").expect("the build stage is named");
    assert_eq!(name.trim(), "builder");
    let tag = image.rsplit_once(':').map(|(_, tag)| tag).unwrap_or("");
    assert!(
        tag.starts_with(pinned_toolchain()),
        "build image `{image}` must use the toolchain of rust-toolchain.toml ({})",
        pinned_toolchain()
    );
    let builds: Vec<&str> = arguments(builder, "RUN")
        .into_iter()
        .filter(|run| run.contains("cargo build"))
        .collect();
    assert_eq!(builds.len(), 1, "one cargo build in the build stage");
    for flag in ["--release", "--locked", "-p guestloop"] {
        assert!(builds[0].contains(flag), "cargo build without `{flag}`");
    }
}

#[test]
fn every_base_image_is_pinned() {
    for stage in stages(CONTAINERFILE) {
        let image = stage[0]
            .arguments
            .split_whitespace()
            .find(|word| !word.starts_with("--"))
            .expect("FROM names an image");
        let last_part = image.rsplit('/').next().unwrap_or(image);
        let pinned = image.contains("@sha256:")
            || last_part
                .split_once(':')
                .is_some_and(|(_, tag)| !tag.is_empty() && tag != "latest");
        assert!(
            pinned,
            "`{image}` needs an explicit tag other than latest, or a digest"
        );
    }
}

#[test]
fn the_runtime_stage_runs_guestloop_as_a_non_root_user() {
    let stages = stages(CONTAINERFILE);
    let runtime = stages.last().expect("a runtime stage");
    assert!(
        !runtime[0].arguments.contains("rust:"),
        "the runtime stage must not carry the toolchain"
    );
    let users = arguments(runtime, "USER");
    let user = users.last().expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        uid.parse::<u32>().is_ok_and(|uid| uid > 0),
        "USER `{user}` must be a numeric non-root uid (Kubernetes runAsNonRoot checks numbers)"
    );
    let entrypoint = arguments(runtime, "ENTRYPOINT");
    assert_eq!(entrypoint.len(), 1);
    assert_eq!(exec_form(entrypoint[0]), ["guestloop"]);
    let command = arguments(runtime, "CMD");
    assert_eq!(command.len(), 1);
    assert_eq!(exec_form(command[0])[0], "serve");
    let copies = arguments(runtime, "COPY");
    assert!(
        copies
            .iter()
            .any(|c| c.starts_with("--from=builder") && c.ends_with("/usr/local/bin/guestloop")),
        "the runtime stage copies the binary from the build stage: {copies:?}"
    );
    assert!(
        arguments(runtime, "RUN").is_empty(),
        "nothing runs at build time in the runtime stage"
    );
}

#[test]
fn no_secret_is_baked_into_the_image() {
    for stage in stages(CONTAINERFILE) {
        for setting in arguments(&stage, "ENV")
            .into_iter()
            .chain(arguments(&stage, "ARG"))
        {
            for secret in ["DATABASE_URL", "SECRET", "TOKEN", "PASSWORD"] {
                assert!(
                    !setting.to_ascii_uppercase().contains(secret),
                    "`{setting}` looks like a secret; pass it at run time"
                );
            }
        }
    }
}

#[test]
fn the_build_context_leaves_out_build_output_and_history() {
    let ignored: Vec<&str> = DOCKERIGNORE
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    for needed in ["target/", ".git/", ".guestloop/"] {
        assert!(ignored.contains(&needed), ".dockerignore lacks `{needed}`");
    }
    // Everything the build needs is in the context.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
        "proto",
        "shared",
        "services",
    ] {
        assert!(root.join(needed).exists(), "{needed} missing");
        assert!(!ignored.iter().any(|i| i.trim_end_matches('/') == needed));
    }
}
