//! `cargo xtask docs`: the README's tables of environment variables, made from the variables
//! each service declares (`VARS` in its `config.rs`), so the documentation and the code
//! cannot drift apart.
//!
//! The tables sit between two markers in `README.md` ([`BEGIN`], [`END`]); the rest of the
//! file is left as it is. A variable read by every service goes in the "Every service" table,
//! one read by some in a table headed with their names. `cargo xtask docs` rewrites the block;
//! `cargo xtask docs --check` only compares (exit 1 when it differs), and so does a test of
//! this crate, which prints the block the README should hold.

use std::{fmt::Write as _, fs, path::Path, process::ExitCode};

use anyhow::{Context as _, bail};
use common::config::{Unset, Var};

/// The services, in the order a request flows through them, and what each reads.
pub(crate) const SERVICES: [(&str, &[&[Var]]); 3] = [
    ("gateway", gateway::config::VARS),
    ("order-service", order_service::config::VARS),
    ("payment-service", payment_service::config::VARS),
];

/// The line before the tables.
pub(crate) const BEGIN: &str = "<!-- Made by `cargo xtask docs` from each service's config.rs (VARS): edit those, not this. -->";
/// The line after them.
pub(crate) const END: &str = "<!-- End of what `cargo xtask docs` makes. -->";

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Only say whether README.md is up to date (exit 1 when not); change nothing.
    #[arg(long)]
    check: bool,
}

pub(crate) fn run(args: &Args, root: &Path) -> anyhow::Result<ExitCode> {
    let path = root.join("README.md");
    let readme =
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let updated = with_tables(&readme, &tables(&SERVICES))?;
    if updated == readme {
        println!("xtask: README.md's variable tables are up to date");
        return Ok(ExitCode::SUCCESS);
    }
    if args.check {
        eprintln!("xtask: README.md's variable tables are out of date: run `cargo xtask docs`");
        return Ok(ExitCode::FAILURE);
    }
    fs::write(&path, updated).with_context(|| format!("writing {}", path.display()))?;
    println!("xtask: README.md's variable tables rewritten");
    Ok(ExitCode::SUCCESS)
}

/// The Markdown tables of `services`' variables: one per set of services that read the same
/// variables, every service's first, then in the order the lists first name them.
pub(crate) fn tables(services: &[(&'static str, &[&[Var]])]) -> String {
    // Each variable, with the services that read it. Two declarations are one variable only
    // when name, default and meaning agree: each service's `LISTEN_ADDR` has its own default.
    let mut rows: Vec<(Var, Vec<&str>)> = Vec::new();
    for (service, groups) in services {
        for var in groups.iter().copied().flatten() {
            match rows.iter_mut().find(|(seen, _)| seen == var) {
                Some((_, readers)) if !readers.contains(service) => readers.push(service),
                Some(_) => {}
                None => rows.push((*var, vec![service])),
            }
        }
    }
    let mut sets: Vec<&Vec<&str>> = Vec::new();
    for (_, readers) in &rows {
        if !sets.contains(&readers) {
            sets.push(readers);
        }
    }
    // Stable: the order of first appearance stays within each kind.
    sets.sort_by_key(|readers| readers.len() != services.len());

    let mut out = String::new();
    for readers in sets {
        let heading = if readers.len() == services.len() {
            "Every service".to_owned()
        } else {
            match readers.split_last() {
                Some((last, [])) => (*last).to_owned(),
                Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
                None => unreachable!("a variable has a reader"),
            }
        };
        let _ = write!(
            out,
            "### {heading}\n\n| variable | default | meaning |\n|---|---|---|\n"
        );
        for (var, _) in rows.iter().filter(|(_, r)| r == readers) {
            let default = match var.unset {
                Unset::Default(text) => format!("`{text}`"),
                Unset::Required { example } => format!("required, e.g. `{example}`"),
                Unset::Empty => String::new(),
                Unset::Computed(words) => words.to_owned(),
            };
            let _ = writeln!(out, "| `{}` | {default} | {} |", var.name, var.meaning);
        }
        out.push('\n');
    }
    out
}

/// `readme` with the block between [`BEGIN`] and [`END`] replaced by `tables`.
pub(crate) fn with_tables(readme: &str, tables: &str) -> anyhow::Result<String> {
    let (Some(begin), Some(end)) = (readme.find(BEGIN), readme.find(END)) else {
        bail!("README.md has no block between the markers {BEGIN:?} and {END:?}");
    };
    if end < begin {
        bail!("README.md's {END:?} comes before {BEGIN:?}");
    }
    Ok(format!(
        "{}{BEGIN}\n\n{tables}{}",
        &readme[..begin],
        &readme[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_tables_are_the_services_declared_variables() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let readme = fs::read_to_string(root.join("README.md")).unwrap();
        let tables = tables(&SERVICES);
        assert!(
            with_tables(&readme, &tables).unwrap() == readme,
            "README.md's variable tables differ from the services' declared lists: run \
             `cargo xtask docs`, or put this between its markers:\n\n{tables}"
        );
    }

    #[test]
    fn no_service_declares_a_variable_twice() {
        for (service, groups) in SERVICES {
            let mut names: Vec<&str> = groups.iter().copied().flatten().map(|v| v.name).collect();
            let all = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), all, "{service} lists a variable twice");
        }
    }

    #[test]
    fn a_variable_read_by_some_services_is_in_a_table_named_after_them() {
        const fn var(name: &'static str) -> Var {
            Var {
                name,
                unset: Unset::Default("1"),
                meaning: "m",
            }
        }
        const ALL: &[Var] = &[var("ALL")];
        let tables = tables(&[
            ("a", &[&[var("A")], ALL]),
            ("b", &[&[var("BC")], ALL]),
            ("c", &[&[var("BC"), var("C")], ALL]),
        ]);
        let headings: Vec<&str> = tables
            .lines()
            .filter_map(|l| l.strip_prefix("### "))
            .collect();
        assert_eq!(headings, ["Every service", "a", "b and c", "c"]);
        assert!(tables.contains("### b and c\n\n| variable | default | meaning |\n|---|---|---|\n| `BC` | `1` | m |\n"), "{tables}");
    }

    #[test]
    fn the_block_between_the_markers_is_replaced_and_nothing_else() {
        let readme = format!("intro\n{BEGIN}\nold\n{END}\nrest\n");
        assert_eq!(
            with_tables(&readme, "new\n").unwrap(),
            format!("intro\n{BEGIN}\n\nnew\n{END}\nrest\n")
        );
        assert!(with_tables("no markers", "").is_err());
    }
}
