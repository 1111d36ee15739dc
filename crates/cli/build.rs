//! Puts the git revision the binary was built from into `concord --version`:
//! `CONCORD_GIT_REV` when the build sets it (an image built without `.git`), else `git
//! rev-parse`, else "unknown".
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CONCORD_GIT_REV");
    // A new commit or checkout changes HEAD (or the ref it names).
    for path in ["../../.git/HEAD", "../../.git/refs/heads"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let rev = std::env::var("CONCORD_GIT_REV")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CONCORD_GIT_REV={rev}");
}
