//! `docker-compose.yml`, the `Dockerfile` and the README, held to the code.
//!
//! Docker cannot run where the tests run, so these files must be right by construction. What
//! can be checked without an engine is checked here: every variable compose sets is read by
//! the code and documented, every variable the code reads is documented, ports and endpoints
//! agree across the files, and each image runs the binary it is named after.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Variables read by the OpenTelemetry SDK and exporter themselves, not by this project's code.
const READ_BY_THE_SDK: [&str; 4] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_BSP_MAX_CONCURRENT_EXPORTS",
];

/// The `environment:` entries of each compose service, and its other top-level keys' lines.
#[derive(Debug, Default)]
struct ComposeService {
    env: BTreeMap<String, String>,
    ports: Vec<String>,
    target: Option<String>,
    image: Option<String>,
}

/// A reader for the subset of YAML this compose file uses (maps, lists, anchors merged by
/// `<<: *name`), so the test needs no YAML dependency.
fn compose() -> BTreeMap<String, ComposeService> {
    let text = read("docker-compose.yml");
    let mut anchors: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut scalar_anchors: BTreeMap<String, String> = BTreeMap::new();
    let mut services: BTreeMap<String, ComposeService> = BTreeMap::new();
    let (mut section, mut service, mut block, mut anchor) =
        (String::new(), String::new(), String::new(), None::<String>);
    for raw in text.lines() {
        let line = raw.split(" #").next().unwrap_or("").trim_end();
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let content = line.trim();
        let (key, value) = match content.split_once(':') {
            Some((k, v)) if !k.starts_with('-') && !k.starts_with('"') => {
                (k.trim().to_owned(), v.trim().to_owned())
            }
            _ => (String::new(), content.to_owned()),
        };
        match indent {
            0 => {
                section = key.clone();
                anchor = None;
                if let Some(name) = value.strip_prefix('&') {
                    let mut parts = name.splitn(2, ' ');
                    let name = parts.next().unwrap_or("").to_owned();
                    match parts.next() {
                        Some(scalar) => {
                            scalar_anchors.insert(name, scalar.trim().to_owned());
                        }
                        None => {
                            anchors.insert(name.clone(), BTreeMap::new());
                            anchor = Some(name);
                        }
                    }
                }
            }
            2 if section == "services" => {
                service = key.clone();
                services.entry(service.clone()).or_default();
            }
            2 => {
                if let Some(a) = &anchor {
                    anchors
                        .get_mut(a)
                        .expect("anchor")
                        .insert(key, unquote(&value));
                }
            }
            4 if section == "services" => {
                block = key.clone();
                if key == "image" {
                    services.get_mut(&service).expect("service").image = Some(value);
                }
            }
            6 if section == "services" => {
                let svc = services.get_mut(&service).expect("service");
                match block.as_str() {
                    "environment" if key == "<<" => {
                        let name = value.trim_start_matches('*');
                        svc.env
                            .extend(anchors.get(name).cloned().unwrap_or_default());
                    }
                    "environment" => {
                        let value = match value.strip_prefix('*') {
                            Some(name) => scalar_anchors.get(name).cloned().unwrap_or_default(),
                            None => unquote(&value),
                        };
                        svc.env.insert(key, value);
                    }
                    "ports" => svc.ports.push(unquote(content.trim_start_matches("- "))),
                    "build" if key == "target" => svc.target = Some(value),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    services
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches('"').to_owned()
}

/// Every environment variable name the README's configuration tables document.
fn documented() -> BTreeSet<String> {
    let readme = read("README.md");
    let config = readme
        .split("## Configuration")
        .nth(1)
        .expect("a Configuration section")
        .split("\n## ")
        .next()
        .unwrap_or("");
    config
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            let first_cell = l.split('|').nth(1).unwrap_or("");
            first_cell
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|t| {
                    t.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                })
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The production source of every crate's `src/`: each file up to its `#[cfg(test)]` module,
/// so a name used only by a unit test does not count as read.
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in fs::read_dir(dir).expect("a source folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&path).expect("a source file");
                let production = text.split("#[cfg(test)]").next().unwrap_or("").to_owned();
                out.push((path, production));
            }
        }
    }
    let mut out = Vec::new();
    for krate in ["common", "gateway", "order-service", "payment-service"] {
        walk(&root().join(krate).join("src"), &mut out);
    }
    out
}

/// Names passed as string literals to `Vars`' methods: `vars.or("LISTEN_ADDR", ..)`.
fn read_by_the_code() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (_, text) in sources() {
        // Without whitespace, so a call rustfmt split over lines (`vars\n    .or(`) is found
        // too; variable names have no spaces to lose.
        let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        for (i, _) in text.match_indices("vars.") {
            let rest = &text[i + 5..];
            let Some(open) = rest.find('(') else { continue };
            let method = &rest[..open];
            if !method.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                continue;
            }
            let arg = rest[open + 1..].trim_start();
            if let Some(lit) = arg.strip_prefix('"') {
                names.insert(lit[..lit.find('"').expect("a closed literal")].to_owned());
            }
        }
    }
    names
}

fn mentioned_in_code(name: &str) -> bool {
    let quoted = format!("\"{name}\"");
    sources().iter().any(|(_, text)| text.contains(&quoted))
}

const OUR_SERVICES: [&str; 3] = ["gateway", "order-service", "payment-service"];

#[test]
fn every_variable_compose_sets_is_read_by_the_code_and_documented() {
    let services = compose();
    let documented = documented();
    for name in OUR_SERVICES {
        let service = services
            .get(name)
            .unwrap_or_else(|| panic!("compose has no {name}"));
        assert!(
            !service.env.is_empty(),
            "{name} has no environment in compose"
        );
        for var in service.env.keys() {
            assert!(
                documented.contains(var),
                "{name}: {var} is set in compose but not in the README"
            );
            assert!(
                mentioned_in_code(var) || READ_BY_THE_SDK.contains(&var.as_str()),
                "{name}: {var} is set in compose but nothing reads it"
            );
        }
    }
}

#[test]
fn every_variable_the_code_reads_is_documented_and_every_documented_one_exists() {
    let documented = documented();
    let read = read_by_the_code();
    assert!(
        read.contains("DATABASE_URL") && read.contains("LISTEN_ADDR"),
        "{read:?}"
    );
    for var in &read {
        assert!(
            documented.contains(var),
            "{var} is read by the code but not documented in the README"
        );
    }
    for var in &documented {
        assert!(
            mentioned_in_code(var) || READ_BY_THE_SDK.contains(&var.as_str()),
            "the README documents {var}, which nothing reads"
        );
    }
}

#[test]
fn service_urls_point_at_the_ports_the_services_listen_on() {
    let services = compose();
    let dockerfile = read("Dockerfile");
    let stage_env = |target: &str, var: &str| -> Option<String> {
        let stage = dockerfile.split(&format!(" AS {target}\n")).nth(1)?;
        let stage = stage.split("\nFROM ").next()?;
        stage
            .lines()
            .find_map(|l| l.strip_prefix(&format!("ENV {var}=")).map(str::to_owned))
    };
    for (service, var, target) in [
        ("gateway", "ORDER_SERVICE_URL", "order-service"),
        ("order-service", "PAYMENT_SERVICE_URL", "payment-service"),
    ] {
        let url = &services[service].env[var];
        let port = url.rsplit(':').next().expect("a port");
        assert_eq!(url, &format!("http://{target}:{port}"), "{service}: {var}");
        let listen = stage_env(target, "LISTEN_ADDR")
            .unwrap_or_else(|| panic!("the {target} stage sets LISTEN_ADDR"));
        assert_eq!(
            listen,
            format!("0.0.0.0:{port}"),
            "{target} listens where {service} calls it"
        );
        let stage = dockerfile
            .split(&format!(" AS {target}\n"))
            .nth(1)
            .expect("the stage");
        assert!(
            stage.contains(&format!("EXPOSE {port}\n")),
            "{target} exposes {port}"
        );
    }
}

#[test]
fn spans_go_to_jaeger_on_the_port_of_the_protocol() {
    let services = compose();
    let jaeger = services.get("jaeger").expect("a jaeger service");
    let image = jaeger.image.as_deref().expect("an image");
    assert!(
        image.starts_with("jaegertracing/jaeger:2."),
        "Jaeger v2: {image}"
    );
    for name in OUR_SERVICES {
        let env = &services[name].env;
        let endpoint = &env["OTEL_EXPORTER_OTLP_ENDPOINT"];
        let expected = match env["OTEL_EXPORTER_OTLP_PROTOCOL"].as_str() {
            "grpc" => "http://jaeger:4317",
            "http/protobuf" => "http://jaeger:4318",
            other => panic!("{name}: unknown protocol {other}"),
        };
        assert_eq!(endpoint, expected, "{name}");
    }
}

#[test]
fn only_the_gateway_and_the_jaeger_ui_are_published() {
    let published: BTreeMap<String, Vec<String>> = compose()
        .into_iter()
        .filter(|(_, s)| !s.ports.is_empty())
        .map(|(name, s)| (name, s.ports))
        .collect();
    assert_eq!(
        published,
        BTreeMap::from([
            ("gateway".to_owned(), vec!["8080:8080".to_owned()]),
            ("jaeger".to_owned(), vec!["16686:16686".to_owned()]),
        ])
    );
}

#[test]
fn each_image_runs_its_own_binary_as_a_non_root_user() {
    let services = compose();
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile.contains("\nUSER 10001:10001\n"),
        "a non-root user in the runtime stage"
    );
    for name in OUR_SERVICES {
        assert_eq!(
            services[name].target.as_deref(),
            Some(name),
            "compose builds the {name} stage"
        );
        let stage = dockerfile
            .split(&format!("FROM runtime AS {name}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("a {name} stage built on the runtime stage"));
        let stage = stage.split("\nFROM ").next().expect("the stage");
        let binary = format!("/usr/local/bin/{name}");
        assert!(stage.contains(&format!(
            "COPY --from=builder /app/target/release/{name} {binary}"
        )));
        assert!(stage.contains(&format!("ENTRYPOINT [\"{binary}\"]")));
        assert!(stage.contains(&format!("CMD [\"{binary}\", \"healthcheck\"]")));
    }
    // The dependency layer and the final build name the same packages (see the Dockerfile).
    let packages = "-p gateway -p order-service -p payment-service -p loadgen";
    assert!(dockerfile.contains(&format!("cargo chef cook --release --locked {packages}")));
    assert!(dockerfile.contains(&format!("cargo build --release --locked {packages}")));
}

#[test]
fn the_builder_image_is_new_enough_for_the_workspace() {
    let dockerfile = read("Dockerfile");
    let manifest = read("Cargo.toml");
    let version = |text: &str, prefix: &str| -> (u32, u32) {
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .expect("a version line")
            .trim_matches('"');
        let mut parts = v.split('.').map(|p| p.parse::<u32>().expect("a number"));
        (parts.next().expect("major"), parts.next().expect("minor"))
    };
    let image = version(&dockerfile, "ARG RUST_VERSION=");
    let msrv = version(&manifest, "rust-version = ");
    assert!(
        image >= msrv,
        "the builder image's Rust {image:?} is older than rust-version {msrv:?}"
    );
}

#[test]
fn the_databases_credentials_are_not_baked_into_the_images() {
    let dockerfile = read("Dockerfile");
    for secret in ["DATABASE_URL", "PASSWORD", "postgres://"] {
        assert!(
            !dockerfile.contains(secret),
            "the Dockerfile mentions {secret}"
        );
    }
}

/// The lines of one service of `docker-compose.yml`, comments included.
fn compose_block(service: &str) -> String {
    let text = read("docker-compose.yml");
    let header = format!("  {service}:");
    let mut lines = text.lines().skip_while(|l| *l != header);
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("a {service} service in docker-compose.yml"));
    let rest = lines.take_while(|l| l.is_empty() || l.starts_with("   "));
    std::iter::once(first)
        .chain(rest)
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn jaeger_is_health_checked_and_every_service_waits_for_it() {
    let jaeger = compose_block("jaeger");
    assert!(
        jaeger.contains(
            r#"test: ["CMD", "wget", "-q", "--spider", "http://localhost:13133/status"]"#
        ),
        "Jaeger's health check asks its health endpoint with the image's wget:\n{jaeger}"
    );
    for name in OUR_SERVICES {
        let block = compose_block(name);
        assert!(
            block.contains("      jaeger:\n        condition: service_healthy\n"),
            "{name} waits for a healthy Jaeger:\n{block}"
        );
    }
}

#[test]
fn images_are_built_on_the_current_debian_release() {
    let dockerfile = read("Dockerfile");
    let compose = read("docker-compose.yml");
    for (file, text) in [
        ("Dockerfile", &dockerfile),
        ("docker-compose.yml", &compose),
    ] {
        assert!(!text.contains("bookworm"), "{file} still uses Debian 12");
    }
    let bases: Vec<&str> = dockerfile
        .lines()
        .filter(|l| {
            l.starts_with("FROM ") && !l.starts_with("FROM chef") && !l.starts_with("FROM runtime")
        })
        .collect();
    assert!(!bases.is_empty());
    for base in bases {
        assert!(base.contains("trixie"), "{base}");
    }
}

#[test]
fn the_on_disk_jaeger_config_listens_where_compose_expects() {
    let jaeger = compose_block("jaeger");
    assert!(jaeger.contains("./jaeger/badger.yaml:/etc/jaeger/badger.yaml:ro"));
    let config = read("jaeger/badger.yaml");
    for endpoint in ["0.0.0.0:4317", "0.0.0.0:4318", "0.0.0.0:13133"] {
        assert!(
            config.contains(endpoint),
            "jaeger/badger.yaml listens on {endpoint}"
        );
    }
    assert!(config.contains("ephemeral: false"));
    assert!(config.contains("keys: /badger/keys") && config.contains("values: /badger/values"));
    assert!(jaeger.contains("jaeger-data:/badger"));
}

#[test]
fn the_load_generator_runs_only_in_the_load_profile_against_the_gateway() {
    let loadgen = compose_block("loadgen");
    assert!(loadgen.contains("    profiles: [\"load\"]\n"), "{loadgen}");
    assert!(loadgen.contains("      target: loadgen\n"), "{loadgen}");
    assert!(
        loadgen.contains(
            r#"command: ["--target", "http://gateway:8080", "--rate", "5", "--duration", "0"]"#
        ),
        "the gateway's compose address and port, until stopped: {loadgen}"
    );
    assert!(loadgen.contains("      gateway:\n        condition: service_healthy\n"));
    let dockerfile = read("Dockerfile");
    let stage = dockerfile
        .split("FROM runtime AS loadgen\n")
        .nth(1)
        .expect("a loadgen stage built on the runtime stage");
    assert!(
        stage.contains("COPY --from=builder /app/target/release/loadgen /usr/local/bin/loadgen")
    );
    assert!(stage.contains(r#"ENTRYPOINT ["/usr/local/bin/loadgen"]"#));
    // The flags compose passes are the load generator's own.
    let main = read("loadgen/src/main.rs");
    for flag in ["target", "rate", "duration"] {
        assert!(
            main.contains(&format!("    {flag}: ")),
            "loadgen has no --{flag}"
        );
    }
}
