//! `docker-compose.yml` and the `Dockerfile`, held to the code.
//!
//! Docker cannot run where the tests run, so these files must be right by construction. What
//! can be checked without an engine is checked here, against the variables each service
//! declares (`VARS` in its `config.rs`): every variable compose sets is one its service
//! declares, every value it sets parses (each service's `Config` is built from them), a
//! `Config` looks up exactly the variables its service declares, ports and endpoints agree
//! across the files and with the declared defaults, and each image runs the binary it is
//! named after. (The README's tables are made from the same lists: `cargo xtask docs`.)

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use common::config::{ConfigError, Var, Vars, shared};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

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
#[expect(
    clippy::too_many_lines,
    reason = "one pass over the lines of the YAML subset compose uses; split, its state would travel between the parts"
)]
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
                section.clone_from(&key);
                anchor = None;
                if let Some(name) = value.strip_prefix('&') {
                    let mut parts = name.splitn(2, ' ');
                    let name = parts.next().unwrap_or("").to_owned();
                    if let Some(scalar) = parts.next() {
                        scalar_anchors.insert(name, scalar.trim().to_owned());
                    } else {
                        anchors.insert(name.clone(), BTreeMap::new());
                        anchor = Some(name);
                    }
                }
            }
            2 if section == "services" => {
                service.clone_from(&key);
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
                block.clone_from(&key);
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

const OUR_SERVICES: [&str; 3] = ["gateway", "order-service", "payment-service"];

/// A service's declared variables, and its `Config` built from a lookup.
struct Declared {
    name: &'static str,
    vars: &'static [&'static [Var]],
    listen_addr: Var,
    build: fn(&Vars) -> Result<(), ConfigError>,
}

const DECLARED: [Declared; 3] = [
    Declared {
        name: "gateway",
        vars: gateway::config::VARS,
        listen_addr: gateway::config::LISTEN_ADDR,
        build: |vars| gateway::Config::from_vars(vars).map(drop),
    },
    Declared {
        name: "order-service",
        vars: order_service::config::VARS,
        listen_addr: order_service::config::LISTEN_ADDR,
        build: |vars| order_service::Config::from_vars(vars).map(drop),
    },
    Declared {
        name: "payment-service",
        vars: payment_service::config::VARS,
        listen_addr: payment_service::config::LISTEN_ADDR,
        build: |vars| payment_service::Config::from_vars(vars).map(drop),
    },
];

impl Declared {
    fn names(&self) -> BTreeSet<&'static str> {
        self.vars
            .iter()
            .copied()
            .flatten()
            .map(|v| v.name)
            .collect()
    }

    /// Builds the `Config` from `env` and returns the names it looked up.
    fn build_recording(&self, env: &BTreeMap<String, String>) -> BTreeSet<String> {
        let looked_up = Arc::new(Mutex::new(BTreeSet::new()));
        let (seen, env) = (looked_up.clone(), env.clone());
        let vars = Vars::from_lookup(move |name| {
            seen.lock().unwrap().insert(name.to_owned());
            env.get(name).cloned()
        });
        if let Err(e) = (self.build)(&vars) {
            panic!("{}: compose's environment does not parse: {e}", self.name);
        }
        looked_up.lock().unwrap().clone()
    }
}

/// A value as compose passes it: `${NAME:-default}` is the default (the demo value the file
/// documents), `${NAME}` a placeholder that parses as any secret here does.
fn interpolated(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closed ${...}") + start;
        let inner = &rest[start + 2..end];
        out.push_str(match inner.split_once(":-") {
            Some((_, default)) => default,
            None => "a-placeholder-of-at-least-32-bytes-for-a-secret",
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn every_variable_compose_sets_is_declared_by_its_service() {
    let services = compose();
    for declared in &DECLARED {
        let service = services
            .get(declared.name)
            .unwrap_or_else(|| panic!("compose has no {}", declared.name));
        assert!(
            !service.env.is_empty(),
            "{} has no environment in compose",
            declared.name
        );
        let names = declared.names();
        for var in service.env.keys() {
            assert!(
                names.contains(var.as_str()),
                "{}: {var} is set in compose but the service does not declare it (its \
                 config.rs, VARS): nothing reads it",
                declared.name
            );
        }
    }
}

#[test]
fn each_config_parses_compose_values_and_reads_exactly_what_its_service_declares() {
    let services = compose();
    for declared in &DECLARED {
        let env: BTreeMap<String, String> = services[declared.name]
            .env
            .iter()
            .map(|(k, v)| (k.clone(), interpolated(v)))
            .collect();
        let looked_up = declared.build_recording(&env);
        let names = declared.names();
        for name in &looked_up {
            assert!(
                names.contains(name.as_str()),
                "{}: the Config reads {name}, which VARS does not declare",
                declared.name
            );
        }
        for name in &names {
            assert!(
                looked_up.contains(*name),
                "{}: VARS declares {name}, which the Config never reads",
                declared.name
            );
        }
    }
}

#[test]
fn compose_interpolation_is_resolved_to_its_defaults() {
    assert_eq!(
        interpolated("postgres://orders:${POSTGRES_PASSWORD:-orders-demo}@postgres:5432/orders"),
        "postgres://orders:orders-demo@postgres:5432/orders"
    );
    assert_eq!(interpolated("plain"), "plain");
    assert!(interpolated("${KEY}").len() >= 32);
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
    let default_port = |name: &str| {
        let declared = DECLARED.iter().find(|d| d.name == name).expect("a service");
        shared::default_port(&declared.listen_addr).to_string()
    };
    for (service, var, target) in [
        (
            "gateway",
            gateway::config::ORDER_SERVICE_URL.name,
            "order-service",
        ),
        (
            "order-service",
            order_service::config::PAYMENT_SERVICE_URL.name,
            "payment-service",
        ),
    ] {
        let url = &services[service].env[var];
        let port = url.rsplit(':').next().expect("a port");
        assert_eq!(url, &format!("http://{target}:{port}"), "{service}: {var}");
        assert_eq!(
            port,
            default_port(target),
            "{target} listens on its declared default port, where {service} calls it"
        );
        let listen = stage_env(target, shared::LISTEN_ADDR)
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
fn each_image_listens_on_its_services_declared_default_port() {
    let dockerfile = read("Dockerfile");
    for declared in &DECLARED {
        let port = shared::default_port(&declared.listen_addr);
        let stage = dockerfile
            .split(&format!("FROM runtime AS {}\n", declared.name))
            .nth(1)
            .and_then(|stage| stage.split("\nFROM ").next())
            .unwrap_or_else(|| panic!("a {} stage", declared.name));
        assert!(
            stage.contains(&format!("\nENV LISTEN_ADDR=0.0.0.0:{port}\n"))
                && stage.contains(&format!("\nEXPOSE {port}\n")),
            "the {} stage listens on, and exposes, port {port}:\n{stage}",
            declared.name
        );
        // What the image sets, in its own stage or the runtime stage under it, is declared.
        let runtime = dockerfile
            .split(" AS runtime\n")
            .nth(1)
            .and_then(|stage| stage.split("\nFROM ").next())
            .expect("a runtime stage");
        let names = declared.names();
        for line in runtime.lines().chain(stage.lines()) {
            if let Some((name, _)) = line.strip_prefix("ENV ").and_then(|l| l.split_once('=')) {
                assert!(
                    names.contains(name),
                    "the {} image sets {name}, which the service does not declare",
                    declared.name
                );
            }
        }
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
    let gateway = shared::default_port(&gateway::config::LISTEN_ADDR);
    let published: BTreeMap<String, Vec<String>> = compose()
        .into_iter()
        .filter(|(_, s)| !s.ports.is_empty())
        .map(|(name, s)| (name, s.ports))
        .collect();
    assert_eq!(
        published,
        BTreeMap::from([
            ("gateway".to_owned(), vec![format!("{gateway}:{gateway}")]),
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
        .flat_map(|l| [l, "\n"])
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
