//! Servers and tools the test suite needs, provisioned by `cargo xtask test`
//! itself so that README's test command passes on a fresh machine.
//!
//! - Missing tools (`systemd-analyze`, `redis-server`, PostgreSQL's
//!   binaries) are installed from Debian's packages when running as root,
//!   and named with the package to install otherwise.
//! - PostgreSQL: unless `DELTA_TEST_POSTGRES_URL` names a server, a
//!   throwaway cluster is made with the system's `initdb` in a temporary
//!   directory, served on a free loopback port with durability off (a test
//!   server loses nothing worth an fsync), and stopped and deleted when the
//!   suite ends, with every database the tests made. A cluster left behind
//!   by a killed run is found by its owner's pid and removed on the next
//!   run.
//! - Redis: the suites start their own `redis-server` per test (each test
//!   needs a clean one), so only the binary is provisioned here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Prefix of the throwaway clusters' directories under the temp dir.
const CLUSTER_PREFIX: &str = "delta-test-pg-";

/// True when this process runs as root (it may then install packages, and
/// must run PostgreSQL as another user: the server refuses root).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Is `name` an executable file on `PATH`?
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Install Debian packages (as root), or fail naming them.
fn apt_install(packages: &[&str], why: &str) -> Result<()> {
    if !is_root() {
        bail!(
            "{why}: install the Debian package(s) {} (apt-get install {}) or run as root so that \
             `cargo xtask test` installs them",
            packages.join(", "),
            packages.join(" ")
        );
    }
    eprintln!("==> installing {} ({why})", packages.join(" "));
    let update = Command::new("apt-get")
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get update")?;
    if !update.success() {
        bail!("apt-get update failed ({update})");
    }
    let install = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get install")?;
    if !install.success() {
        bail!("apt-get install {} failed ({install})", packages.join(" "));
    }
    Ok(())
}

/// Make sure each `(binary, Debian package)` pair's binary is on `PATH`,
/// installing the missing packages in one go.
pub fn ensure_binaries(pairs: &[(&str, &str)], why: &str) -> Result<()> {
    let missing: Vec<&str> = pairs
        .iter()
        .filter(|(binary, _)| on_path(binary).is_none())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing, why)?;
    for (binary, package) in pairs {
        if on_path(binary).is_none() {
            bail!("{binary} is still not on PATH after installing {package}");
        }
    }
    Ok(())
}

/// The C toolchain the QuickJS guests build with (see `QUICKJS_ENV`):
/// Debian's clang, its archiver and wasm linker, wasi-libc's headers and
/// the compiler runtime for wasm32.
pub fn ensure_c_for_wasm() -> Result<()> {
    let runtime_lib = std::fs::read_dir("/usr/lib/llvm-14/lib/clang")
        .map(|versions| {
            versions.flatten().any(|v| {
                v.path()
                    .join("lib/wasi/libclang_rt.builtins-wasm32.a")
                    .is_file()
            })
        })
        .unwrap_or(false);
    let ready = on_path("clang").is_some()
        && on_path("llvm-ar-14").is_some()
        && on_path("wasm-ld").is_some()
        && Path::new("/usr/include/wasm32-wasi").is_dir()
        && runtime_lib;
    if ready {
        return Ok(());
    }
    apt_install(
        &["clang", "lld", "wasi-libc", "libclang-rt-14-dev-wasm32"],
        "the JavaScript engine guests compile QuickJS (C) for WebAssembly",
    )
}

/// The directory holding PostgreSQL's server binaries: Debian keeps them
/// off `PATH` under `/usr/lib/postgresql/<major>/bin` (the newest wins).
fn postgres_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    on_path("initdb").and_then(|initdb| initdb.parent().map(Path::to_owned))
}

/// Is a process with this pid alive?
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Remove clusters whose owning `cargo xtask test` is gone (killed runs).
fn remove_stale_clusters(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .and_then(|n| n.strip_prefix(CLUSTER_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if alive(owner) {
            continue;
        }
        let dir = entry.path();
        let postmaster = std::fs::read_to_string(dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
        // Only a postmaster of that very cluster (its working directory is
        // the data directory): a stale or planted pid file must not make
        // root signal anything else (0 and -1 would mean whole groups).
        let ours = |pid: i32| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).ok() == Some(dir.join("data"))
        };
        if let Some(pid) = postmaster.filter(|pid| *pid > 1 && ours(*pid)) {
            // SIGQUIT: immediate shutdown; the data is thrown away anyway.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGQUIT,
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        eprintln!(
            "==> removing a test PostgreSQL cluster left by a killed run: {}",
            dir.display()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A throwaway PostgreSQL server, stopped and deleted when dropped.
pub struct Postgres {
    child: Option<Child>,
    dir: PathBuf,
    /// A superuser URL on the `postgres` database (tests create their own).
    pub url: String,
}

/// The user and group the server runs as: ours, or `postgres` when we are
/// root (`postgres` refuses to run as root).
fn server_identity() -> Result<Option<(u32, u32)>> {
    if !is_root() {
        return Ok(None);
    }
    let id = |flag: &str| -> Result<u32> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .context("running id postgres")?;
        if !out.status.success() {
            bail!(
                "running as root, the test PostgreSQL must run as the `postgres` user, which does \
                 not exist (Debian's postgresql package creates it)"
            );
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("parsing id's output")
    };
    Ok(Some((id("-u")?, id("-g")?)))
}

fn as_server_user(command: &mut Command, identity: Option<(u32, u32)>) -> &mut Command {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = identity {
        command.uid(uid).gid(gid).env("HOME", "/tmp");
    }
    command.env("LC_ALL", "C").env_remove("PGDATA")
}

impl Postgres {
    /// Install PostgreSQL if needed, make a cluster and start it.
    pub fn start() -> Result<Self> {
        let bin = match postgres_bin_dir() {
            Some(bin) => bin,
            None => {
                apt_install(
                    &["postgresql"],
                    "the control plane's API suite runs on PostgreSQL as well as SQLite",
                )?;
                postgres_bin_dir().context("no initdb under /usr/lib/postgresql after install")?
            }
        };
        let identity = server_identity()?;
        let tmp = std::env::temp_dir();
        remove_stale_clusters(&tmp);
        // A fresh directory that must not exist yet (`create_dir`, not
        // `create_dir_all`): nothing planted at a predictable path is
        // handed to the server's user.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = tmp.join(format!(
            "{CLUSTER_PREFIX}{}-{nanos:08x}",
            std::process::id()
        ));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut server = Self {
            child: None,
            dir: dir.clone(),
            url: String::new(),
        };
        if let Some((uid, gid)) = identity {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .with_context(|| format!("handing {} to postgres", dir.display()))?;
        }
        let data = dir.join("data");
        let out = as_server_user(&mut Command::new(bin.join("initdb")), identity)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "delta",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let log_path = dir.join("server.log");
        // Ports are picked free and may be taken before the server binds:
        // a few tries.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .context("finding a free port")?
                .port();
            let log = std::fs::File::create(&log_path).context("creating the server log")?;
            if let Some((uid, gid)) = identity {
                let _ = std::os::unix::fs::chown(&log_path, Some(uid), Some(gid));
            }
            let child = as_server_user(&mut Command::new(bin.join("postgres")), identity)
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
                .arg(&dir)
                // Throwaway data: durability buys nothing and costs seconds.
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().context("cloning the log handle")?)
                .stderr(log)
                .spawn()
                .context("starting postgres")?;
            server.child = Some(child);
            if server.wait_ready(&bin, port)? {
                server.url = format!("postgres://delta@127.0.0.1:{port}/postgres");
                return Ok(server);
            }
            server.stop();
        }
        bail!(
            "the test PostgreSQL did not start; its log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        )
    }

    /// Wait until the server accepts connections; false if it exited.
    fn wait_ready(&mut self, bin: &Path, port: u16) -> Result<bool> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && child.try_wait().context("polling postgres")?.is_some()
            {
                return Ok(false);
            }
            // Through the cluster's own socket directory: another server
            // that took the port cannot answer for ours.
            let ready = Command::new(bin.join("pg_isready"))
                .arg("-q")
                .arg("-h")
                .arg(&self.dir)
                .args(["-p", &port.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(false)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT: fast shutdown (disconnect clients, no checkpoint wait).
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGINT,
                );
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
