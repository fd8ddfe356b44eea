//! Files the server keeps beside its store: written private (mode 0600),
//! because they hold keys, password-equivalent data or the server secret.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to a new or truncated file that only the owner can read.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    restrict(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Makes an existing file owner-only (a file made by an older version, or
/// by a library that used the default mode).
pub(crate) fn restrict(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// The server's secret: 32 random bytes in `dir/server.secret`, made on
/// first start. It keys what must be stable across restarts but unguessable
/// from outside, such as the decoy SCRAM salts of accounts that do not exist.
pub(crate) fn server_secret(dir: &Path) -> std::io::Result<[u8; 32]> {
    let path = dir.join("server.secret");
    match std::fs::read(&path) {
        Ok(b) if b.len() == 32 => {
            restrict(&path)?;
            let mut out = [0u8; 32];
            out.copy_from_slice(&b);
            Ok(out)
        }
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: not a 32-byte secret", path.display()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret: [u8; 32] = rand::random();
            write_private(&path, &secret)?;
            Ok(secret)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_secret_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = server_secret(dir.path()).unwrap();
        assert_eq!(server_secret(dir.path()).unwrap(), a);
        #[cfg(unix)]
        assert_eq!(mode(&dir.path().join("server.secret")), 0o600);
        std::fs::write(dir.path().join("server.secret"), b"short").unwrap();
        assert!(server_secret(dir.path()).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, b"old").unwrap();
        write_private(&p, b"new").unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
    }
}
