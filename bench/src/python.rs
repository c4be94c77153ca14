//! The Python contrast of issue 10: the same order flow as the tutorial would write it, three
//! Flask services in `bench/python/`, measured beside the Rust one.
//!
//! They serve the gateway's `POST /api/orders` the way the Rust services do (201 with the
//! order's id, the same five statements on the same schema, the same 17-span trace exported
//! over the OTLP protocol the scenario gives the Rust services), with the tutorial's habits: Flask's threaded development server, a
//! `requests.post` per call (a new connection each time), OpenTelemetry Python's SDK with a
//! `BatchSpanProcessor` and the Flask, `requests` and psycopg2 auto-instrumentations. The
//! benchmark starts them through [`System::start`](crate::system::System::start), so they get
//! the same fresh database, the same receiver in its own process, the same environment
//! variables and the same CPU accounting as the Rust services.
//!
//! Their interpreter is a venv under the benchmark's work directory, made once with
//! `python3 -m venv` and `pip install -r bench/python/requirements.txt`, and made again only
//! when that file changes. A machine without `python3`, its `venv` module or a reachable
//! package index gets the reason printed and the Python rows marked not measured.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use crate::system::Binary;

/// A venv with the pinned requirements installed, and the services' sources.
pub(crate) struct PythonStack {
    /// The venv's interpreter.
    python: PathBuf,
    /// `bench/python`, where each service is one script.
    apps: PathBuf,
}

impl PythonStack {
    /// The venv in `work`, made or brought up to date with `bench/python/requirements.txt`;
    /// `Err` says, in one line, why the Python stack cannot run on this machine.
    pub(crate) fn prepare(work: &Path) -> Result<PythonStack, String> {
        let apps = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
        let requirements_path = apps.join("requirements.txt");
        let requirements = std::fs::read_to_string(&requirements_path)
            .map_err(|e| format!("reading {}: {e}", requirements_path.display()))?;
        let venv = work.join("python-venv");
        let python = venv.join("bin/python");
        // The requirements the venv was made with, written once pip succeeded: the same
        // text means the same pinned packages, so the venv is reused as it is.
        let installed = venv.join("bench-requirements.txt");
        if python.exists()
            && std::fs::read_to_string(&installed).is_ok_and(|text| text == requirements)
        {
            return Ok(PythonStack { python, apps });
        }
        let version = run(Command::new("python3").arg("--version"))
            .map_err(|e| format!("python3 is not usable: {e}"))?;
        eprintln!(
            "bench: making the Python venv in {} ({}; once, about a minute)",
            venv.display(),
            String::from_utf8_lossy(&version.stdout).trim()
        );
        if venv.exists() {
            std::fs::remove_dir_all(&venv)
                .map_err(|e| format!("removing the stale {}: {e}", venv.display()))?;
        }
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv)).map_err(|e| {
            format!("`python3 -m venv` failed (on Debian: apt-get install python3-venv): {e}")
        })?;
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements_path))
        .map_err(|e| {
            format!(
                "`pip install -r {}` failed: {e}",
                requirements_path.display()
            )
        })?;
        std::fs::write(&installed, &requirements)
            .map_err(|e| format!("writing {}: {e}", installed.display()))?;
        Ok(PythonStack { python, apps })
    }

    /// The command that runs `binary`'s role in Python. `-B`: no `__pycache__` is written
    /// into the source tree.
    pub(crate) fn command(&self, binary: Binary) -> Command {
        let mut command = Command::new(&self.python);
        command
            .arg("-B")
            .arg(self.apps.join(script(binary)))
            .current_dir(&self.apps);
        command
    }
}

/// The script that plays `binary`'s part.
fn script(binary: Binary) -> &'static str {
    match binary {
        Binary::Gateway => "gateway.py",
        Binary::OrderService => "order_service.py",
        Binary::PaymentService => "payment_service.py",
    }
}

/// Runs `command` to its end; `Err` is its last line of error output (or how it failed to
/// start), for a one-line reason.
fn run(command: &mut Command) -> Result<Output, String> {
    let output = command.output().map_err(|e| e.to_string())?;
    if output.status.success() {
        return Ok(output);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
    Err(format!(
        "{}: {}",
        output.status,
        last.unwrap_or("no error output").trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_has_its_script_in_bench_python() {
        let apps = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
        for binary in Binary::ALL {
            let path = apps.join(script(binary));
            assert!(path.exists(), "{} plays {}", path.display(), binary.name());
        }
        assert!(apps.join("requirements.txt").exists());
    }

    #[test]
    fn a_failing_command_is_reported_by_its_last_line_of_error_output() {
        let err =
            run(Command::new("sh").args(["-c", "echo first >&2; echo 'the cause' >&2; exit 3"]))
                .unwrap_err();
        assert!(err.ends_with(": the cause"), "{err}");
        let err = run(&mut Command::new("/nonexistent/python3")).unwrap_err();
        assert!(!err.is_empty());
    }
}
